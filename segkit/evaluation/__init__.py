"""Scoring: a trained network on a validation split or on every test set under a dataset root (``evaluate``),
folders of saved masks (``folders``), the methods x test-sets tables papers print (``paper``, ``tables``), the
curves (``curves``) and the metric card that says which conventions produced a number (``card``)."""
