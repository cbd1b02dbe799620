"""Everything between two processes: no pickle, raw tensor buffers, codecs, envelopes, TLS, links.

Import the modules themselves (``splittracer.wire.codecs``, ``.tensors``, ...):
this package imports nothing at import time, so reading a manifest (which
checks codec names) does not load torch.
"""
