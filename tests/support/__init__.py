"""Helpers the tests share: services and their addresses, test servers, images, bundles.

Tests import helpers from here, never from another test module or a conftest (a conftest only
declares fixtures, and pytest may load it under another module name than an import would).
"""
