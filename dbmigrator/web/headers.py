"""Response headers every dbmigrator page carries: it is an admin console."""
from pyramid.events import NewResponse

HEADERS = {
    'X-Frame-Options': 'DENY',
    'Content-Security-Policy': "frame-ancestors 'none'",
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'same-origin',
    'Cache-Control': 'no-store',
}


def add_headers(event):
    route = event.request.matched_route
    if route is None or not route.name.startswith('dbmigrator.'):
        return
    for name, value in HEADERS.items():
        event.response.headers.setdefault(name, value)


def includeme(config):
    config.add_subscriber(add_headers, NewResponse)
