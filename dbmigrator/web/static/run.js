// Live progress for a run page: poll the run's JSON, update in place, and
// reload once the run is over so that the page shows the final result with
// its diffs. Without JavaScript, a refresh shows the same.
// Diffs wrap; a button per diff turns wrapping off, to read long lines as they are.
(function () {
  var diffs = document.querySelectorAll('pre.diff');
  Array.prototype.forEach.call(diffs, function (diff) {
    var button = document.createElement('button');
    button.type = 'button';
    button.className = 'link wrap-toggle';
    button.textContent = 'Do not wrap lines';
    button.addEventListener('click', function () {
      var off = diff.classList.toggle('nowrap');
      button.textContent = off ? 'Wrap lines' : 'Do not wrap lines';
    });
    diff.parentNode.insertBefore(button, diff);
  });
})();

(function () {
  var page = document.getElementById('run');
  if (!page || page.getAttribute('data-state') !== 'running' &&
      page.getAttribute('data-state') !== 'waiting') {
    return;
  }
  var url = page.getAttribute('data-json');
  function text(id, value) {
    var node = document.getElementById(id);
    if (node) { node.textContent = value; }
  }
  function poll() {
    var request = new XMLHttpRequest();
    request.open('GET', url);
    request.setRequestHeader('Accept', 'application/json');
    request.onload = function () {
      if (request.status !== 200) { return setTimeout(poll, 2000); }
      var data = JSON.parse(request.responseText);
      if (data.state !== 'running' && data.state !== 'waiting') {
        window.location.reload();
        return;
      }
      text('current', data.current || (data.waiting_for ? 'waiting for the migration lock' : 'starting'));
      text('elapsed', data.elapsed === null ? '' : data.elapsed.toFixed(0) + 's');
      text('waiting-for', data.waiting_for || '');
      text('holding', data.holding || '');
      text('output', data.output.join('\n'));
      text('done-count', String(data.steps.length));
      text('of-steps', data.steps_planned ? ' of ' + data.steps_planned : '');
      text('position', data.step && data.steps_planned ? ', step ' + data.step + ' of ' + data.steps_planned : '');
      setTimeout(poll, 1000);
    };
    request.onerror = function () { setTimeout(poll, 2000); };
    request.send();
  }
  setTimeout(poll, 1000);
})();
