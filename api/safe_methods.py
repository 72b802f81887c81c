"""HEAD and OPTIONS change nothing (they are "safe" methods, RFC 9110 §9.2.1), on every route.

Flask answers OPTIONS itself (and flask-cors answers preflights) without running a view. HEAD, though, runs the
GET view and drops the body: harmless where GET only reads, but the original server's API has GETs that act
(`/api/cancel`, `/api/clear`; `/api/image` deletes what it sends). Those views decide what a HEAD means:
`/api/image` answers the headers its GET would, keeping the image; a GET that acts takes `@acts_on_get`, and a
HEAD there is refused with 405 and an `Allow` without HEAD, because its answer could not tell what was done.
tests/test_safe_methods.py sends HEAD and OPTIONS to every route of the url_map and checks nothing changed.
"""

from __future__ import annotations

from flask import request
from flask.views import MethodView
from werkzeug.exceptions import MethodNotAllowed


def acts_on_get(view_class: type[MethodView]) -> type[MethodView]:
    """Marks a MethodView whose GET changes state: a HEAD is refused (405), never run as the GET."""
    dispatch = view_class.dispatch_request

    def dispatch_request(self, **kwargs):
        if request.method == "HEAD":
            allowed = sorted((request.url_rule.methods or set()) - {"HEAD"})
            raise MethodNotAllowed(allowed, f"HEAD is not allowed here: a GET of {request.path} changes state.")
        return dispatch(self, **kwargs)

    view_class.dispatch_request = dispatch_request
    return view_class


def is_head() -> bool:
    """Whether this request is a HEAD, which Flask serves with the GET view: that view must then change nothing."""
    return request.method == "HEAD"
