"""Deprecated alias of :mod:`coupa_plugin.refhost.logfmt` (goes away in the next release)."""

from coupa_plugin.host._deprecated import moved

moved(__name__)
