"""Deprecated alias of :mod:`coupa_plugin.refhost.progress` (goes away in the next release)."""

from coupa_plugin.host._deprecated import moved

moved(__name__)
