"""How tasks and tensors travel between participants: no pickle, raw tensor buffers, codecs."""

from splittracer.wire.codecs import CODECS, Codec, get_codec
from splittracer.wire.tensors import DTYPE_NAMES, TensorMeta, decode_tensor, dtype_of, encode_tensor

__all__ = [
    "CODECS",
    "DTYPE_NAMES",
    "Codec",
    "TensorMeta",
    "decode_tensor",
    "dtype_of",
    "encode_tensor",
    "get_codec",
]
