"""The span process's entry point: ``python -m botfactory.observability._span_child``, started by
:class:`~botfactory.observability.span_process.SpanProcessSink` (a module of its own, so the classes the parent
pickles are the ones the child imports)."""

from botfactory.observability.span_process import child_main

if __name__ == "__main__":
    child_main()
