"""`python -m tests.support.llama_server_main ARGS`: llama_cpp.server without repacking.

The same llama-cpp-python build that ``LlamaCppLLM`` guards
(``disable_weight_repacking``) segfaults in the server too, so the test
server applies the same switch before handing over to ``llama_cpp.server``.
"""

from __future__ import annotations

import runpy

from ragserve.generate.llamacpp import disable_weight_repacking

if __name__ == "__main__":
    disable_weight_repacking()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
