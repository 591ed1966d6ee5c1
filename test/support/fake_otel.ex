# Stand-ins for the two modules of `opentelemetry_api` that Hotpath.Metrics reads exemplars
# from (`exemplar: :opentelemetry`), with the same functions and return shapes: the current
# span context is whatever the test put in the process dictionary.
defmodule :otel_tracer do
  @moduledoc false
  def current_span_ctx, do: Process.get(:hotpath_fake_span, :undefined)
end

defmodule :otel_span do
  @moduledoc false
  def is_valid({:span_ctx, trace_id, span_id}), do: trace_id != 0 and span_id != 0
  def is_valid(_), do: false

  def hex_trace_id({:span_ctx, trace_id, _}),
    do: Base.encode16(<<trace_id::128>>, case: :lower)

  def hex_span_id({:span_ctx, _, span_id}), do: Base.encode16(<<span_id::64>>, case: :lower)
end
