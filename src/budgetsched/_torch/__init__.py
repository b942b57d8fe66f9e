"""The PyTorch adapter's modules; import from :mod:`budgetsched.torch`."""
