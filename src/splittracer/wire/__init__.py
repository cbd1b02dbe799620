"""Everything between two processes: how tasks, tensors and control messages travel.

No pickle anywhere; tensors travel as raw buffers. The modules, bottom up:

- :mod:`.tensors`: a tensor's metadata and raw buffer.
- :mod:`.codecs`: optional compression of those buffers.
- :mod:`.envelope`: an encoded task (header and buffers) in its envelope, one
  encoding for both paths; what is sent (``Outgoing``) and what arrives
  (``Incoming``). Task types are not known here: ``splittracer.tasks``
  encodes and decodes them.
- :mod:`.shaping`: link emulation, a rate and a latency on the sending side.
- :mod:`.messages`: the control plane's messages (Hello, Configure, Watch, ...).
- :mod:`.tls`: the run's certificates, mutual TLS on every link.
- :mod:`.link`: the one ``Link`` interface a sender uses, whichever the path.
- :mod:`.datalink`: the data plane, tasks as frames on a socket (``SocketLink``).
- :mod:`.grpc_path`: tasks over gRPC calls (``GrpcLink``), and gRPC channels.

Of this project it imports only lower layers (metrics, clock, errors), never
``tasks``. Importing the package itself loads nothing (no torch, no gRPC): reading
a manifest checks codec names through :mod:`.codecs` without loading torch.
"""
