"""``prn-serve``: an exported (or checkpointed) PRN detector as an HTTP inspection service.

A camera PC posts one image at a time; concurrent requests are batched through the model
(:mod:`prn.serve.batching`), bad input is refused with a 4xx that names the fix
(:mod:`prn.serve.uploads`), every decision is committed to an append-only SQLite log before it
is answered (:mod:`prn.serve.decisions`), and a page at ``/`` shows a person what the model saw.
It runs on the torch-free ``prn-deploy[onnx,serve]`` install.
"""
