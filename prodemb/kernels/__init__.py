"""CPU fast paths of prodemb.model, each the same function as the plain PyTorch version it replaces
(tests/test_kernels.py checks them against it): the Text-CNN encoder (``textcnn``) and oneDNN linear layers
(``linear``)."""
