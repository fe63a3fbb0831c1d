"""Emulators of the external services the bridge talks to.

They are real HTTP servers faithful to the public API documentation (see
``../shared/facts/``). Tests start them on free ports; sandbox mode starts them
next to the bridge so a newcomer can click every feature without real accounts.
"""
