"""Redirects by path only: a forged ``Host`` header never reaches ``Location``.

WebOb makes every ``Location`` absolute from the request's ``Host`` when the
response is sent; a path-only ``Location`` (RFC 9110 allows it) is left as
it is here.
"""
from pyramid.httpexceptions import HTTPFound, HTTPSeeOther


class _PathOnly:
    def _abs_headerlist(self, environ):
        return list(self.headerlist)


class SeeOther(_PathOnly, HTTPSeeOther):
    pass


class Found(_PathOnly, HTTPFound):
    pass


def see_other(request, route_name, headers=None, **kw):
    return SeeOther(request.dbm_path(route_name, **kw), headers=headers)


def found(request, route_name, **kw):
    return Found(request.dbm_path(route_name, **kw))
