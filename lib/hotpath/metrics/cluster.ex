defmodule Hotpath.Metrics.Cluster do
  @moduledoc false
  # Cluster views of a Hotpath.Metrics instance (`cluster_snapshot/2`, `prometheus/2`): every
  # node's registry of the same name is exported with :erpc.multicall and merged into a fresh
  # registry built from this node's definitions. The merging itself is native
  # (`metrics_cluster.rs`); this module gathers, builds the view's definitions and sorts the
  # answers into merged nodes and failures.

  alias Hotpath.Native

  @default_timeout 5_000
  @max_series_cap 10_000_000

  @doc """
  Collects the view: `%{registry, meta, requested, nodes, failed}`. `opts` holds `:timeout`
  and `:nodes` (already checked to be the only keys).
  """
  def collect(instance, opts) do
    meta = Hotpath.Metrics.Instance.meta!(instance)
    timeout = Keyword.get(opts, :timeout, @default_timeout)
    nodes = Keyword.get_lazy(opts, :nodes, fn -> [node() | Node.list()] end)

    answers = :erpc.multicall(nodes, __MODULE__, :export, [instance], timeout)

    meta = Enum.map(meta, &view_meta(&1, length(nodes)))
    registry = Native.metrics_new(Enum.map(meta, & &1.spec))

    {merged, failed} =
      nodes
      |> Enum.zip(answers)
      |> Enum.reduce({[], []}, fn {node, answer}, {merged, failed} ->
        case merge_answer(registry, node, answer) do
          :ok -> {[node | merged], failed}
          {:error, reason} -> {merged, [{node, reason} | failed]}
        end
      end)

    %{
      registry: registry,
      meta: meta,
      requested: nodes,
      nodes: Enum.reverse(merged),
      failed: Enum.reverse(failed)
    }
  end

  @doc """
  Merges one node's `:erpc.multicall/5` answer into the view's registry: `:ok` or `{:error,
  reason}`. The answer comes from another node: whatever it holds, a defect is an error (it
  lands under `:failed`), never an exception.
  """
  def merge_answer(registry, node, answer), do: merge(registry, node, answer)

  defp merge(registry, node, {:ok, {:ok, exported}}) when is_list(exported) do
    Native.metrics_import(registry, exported, Atom.to_string(node))
  rescue
    e -> {:error, {:malformed, Exception.message(e)}}
  end

  defp merge(_registry, _node, {:ok, {:error, :not_running}}), do: {:error, :not_running}
  defp merge(_registry, _node, {:error, {:erpc, reason}}), do: {:error, erpc_reason(reason)}

  defp merge(_registry, _node, {:error, {:exception, reason, _stack}}),
    do: {:error, {:exception, reason}}

  defp merge(_registry, _node, {:exit, {:exception, reason}}), do: {:error, {:exception, reason}}
  defp merge(_registry, _node, {:exit, {:signal, reason}}), do: {:error, {:exception, reason}}
  defp merge(_registry, _node, {:throw, value}), do: {:error, {:exception, {:nocatch, value}}}
  defp merge(_registry, _node, other), do: {:error, {:malformed, inspect(other, limit: 10)}}

  defp erpc_reason(reason) when reason in [:timeout, :noconnection], do: reason
  defp erpc_reason(reason), do: {:exception, {:erpc, reason}}

  # The view's definition of a metric: the same as this node's, with room for every node's
  # series, and a `node` label on last values (which cannot be combined across nodes).
  defp view_meta(%{spec: spec} = m, nodes) do
    spec = %{spec | max_series: min(spec.max_series * max(nodes, 1), @max_series_cap)}

    if m.kind == :last_value and :node not in m.tags do
      spec = %{spec | labels: spec.labels ++ ["node"], tag_keys: spec.tag_keys ++ [:node]}
      %{m | tags: m.tags ++ [:node], spec: spec}
    else
      %{m | spec: spec}
    end
  end

  @doc false
  # What `collect/2` reads on each node (called there through :erpc).
  @spec export(atom()) :: {:ok, list()} | {:error, :not_running}
  def export(instance) do
    case :persistent_term.get({Hotpath.Metrics, instance}, nil) do
      nil -> {:error, :not_running}
      registry -> {:ok, Native.metrics_export(registry)}
    end
  end

  # :erpc accepts timeouts up to 2^32 - 1 ms.
  @max_timeout 4_294_967_295

  @doc false
  # The options of a cluster view, for the schemas of `Hotpath.Metrics`.
  def options do
    [
      timeout: [
        type: {:integer, 1, @max_timeout},
        default: @default_timeout,
        doc: "Milliseconds to wait for all nodes together"
      ],
      nodes: [
        type: {:custom, __MODULE__, :nodes_option, "a non-empty list of node names"},
        doc_default: "this node and every connected node (`[node() | Node.list()]`)",
        doc: "The nodes to read"
      ]
    ]
  end

  @doc false
  def nodes_option([_ | _] = nodes) do
    if Hotpath.Options.proper_list?(nodes) and Enum.all?(nodes, &is_atom/1),
      do: {:ok, Enum.uniq(nodes)},
      else: :error
  end

  def nodes_option(_other), do: :error
end
