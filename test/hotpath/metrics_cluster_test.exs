defmodule Hotpath.MetricsClusterTest do
  # Cluster views of Hotpath.Metrics on this node alone: options, failures, exposition and
  # the NIFs' handling of foreign input. The multi-node merge is in test/hotpath/cluster/.
  use ExUnit.Case, async: true

  alias Hotpath.{Metrics, Native}

  defp start!(metrics) do
    name = :"metrics_cluster_#{System.unique_integer([:positive])}"
    start_supervised!({Metrics, name: name, metrics: metrics, telemetry: false})
    name
  end

  defp all_kinds do
    [
      Metrics.counter("web.req.count", tags: [:route]),
      Metrics.sum("web.req.bytes"),
      Metrics.last_value("vm.memory.bytes"),
      Metrics.summary("web.req.duration", tags: [:route]),
      Metrics.distribution("web.req.latency", reporter_options: [buckets: [1, 10]])
    ]
  end

  defp record_some(name) do
    for v <- [1, 5, 12] do
      Metrics.record(name, "web.req.count", nil, %{route: "/a"})
      Metrics.record(name, "web.req.duration", v, %{route: "/a"})
    end

    Metrics.record(name, "web.req.bytes", 100)
    Metrics.record(name, "web.req.latency", 7)
    Metrics.record(name, "vm.memory.bytes", 42)
  end

  test "this node alone: the view is the snapshot, last values tagged with the node" do
    name = start!(all_kinds())
    record_some(name)
    view = Metrics.cluster_snapshot(name)
    assert %{nodes: [n], failed: []} = view
    assert n == node()

    local = Metrics.snapshot(name)
    last = fn metrics -> Enum.find(metrics, &(&1.kind == :last_value)) end

    assert Enum.reject(view.metrics, &(&1.kind == :last_value)) ==
             Enum.reject(local, &(&1.kind == :last_value))

    assert last.(view.metrics).series == [
             %{tags: %{node: Atom.to_string(node())}, value: 42.0}
           ]
  end

  test "prometheus(name, cluster: true) is valid exposition text with the up gauge" do
    name = start!(all_kinds())
    record_some(name)
    text = IO.iodata_to_binary(Metrics.prometheus(name, cluster: true, timeout: 1_000))
    assert text =~ ~s(vm_memory_bytes{node="#{node()}"} 42.0\n)
    assert text =~ ~s(# TYPE hotpath_metrics_cluster_up gauge\n)
    assert String.ends_with?(text, ~s(hotpath_metrics_cluster_up{node="#{node()}"} 1\n))
    assert Metrics.prometheus(name, cluster: false) == Metrics.prometheus(name)

    {output, status} = Hotpath.Test.Promtool.check(text)
    assert status == 0, "promtool rejected the exposition:\n#{output}\n#{text}"
  end

  test "nodes that cannot be reached are reported, not raised" do
    name = start!(all_kinds())
    record_some(name)
    gone = :"nobody_#{System.unique_integer([:positive])}@127.0.0.1"
    view = Metrics.cluster_snapshot(name, nodes: [node(), gone], timeout: 2_000)
    assert view.nodes == [node()]
    assert view.failed == [{gone, :noconnection}]

    text = IO.iodata_to_binary(Metrics.prometheus(name, cluster: true, nodes: [gone, node()]))
    assert text =~ ~s(hotpath_metrics_cluster_up{node="#{gone}"} 0\n)
  end

  test "the series cap of the view has room for every node" do
    name =
      start!([Metrics.counter("capped.count", tags: [:id], reporter_options: [max_series: 2])])

    for id <- 1..3, do: Metrics.record(name, "capped.count", nil, %{id: id})
    %{metrics: [%{series: local}]} = %{metrics: Metrics.snapshot(name)}
    # Locally the third id went to the overflow series; the view keeps the same series.
    assert Enum.map(local, & &1.tags.id) == ["1", "2", "_overflow_"]

    assert Enum.map(hd(Metrics.cluster_snapshot(name).metrics).series, & &1.tags.id) ==
             ["1", "2", "_overflow_"]
  end

  test "bad options raise ArgumentError, unknown instances Hotpath.NotRunningError" do
    name = start!([Metrics.counter("a.b.c")])

    for {fun, message} <- [
          {fn -> Metrics.cluster_snapshot(name, timeout: 0) end, ~r/timeout must be an integer/},
          {fn -> Metrics.cluster_snapshot(name, nodes: []) end, ~r/nodes must be a non-empty/},
          {fn -> Metrics.cluster_snapshot(name, nodes: ["a"]) end, ~r/nodes must be a non-empty/},
          {fn -> Metrics.cluster_snapshot(name, colour: :red) end,
           ~r/unknown options \[:colour\]/},
          {fn -> Metrics.cluster_snapshot(name, :all) end, ~r/must be a keyword list/},
          {fn -> Metrics.prometheus(name, cluster: :yes) end, ~r/cluster must be a boolean/},
          {fn -> Metrics.prometheus(name, colour: :red) end, ~r/unknown options \[:colour\]/}
        ] do
      assert_raise ArgumentError, message, fun
    end

    assert_raise Hotpath.NotRunningError, ~r/no Hotpath.Metrics named :nope/, fn ->
      Metrics.cluster_snapshot(:nope)
    end
  end

  test "the export of a node that does not run the instance" do
    assert Metrics.Cluster.export(:nope) == {:error, :not_running}
  end

  test "imports check foreign terms completely and change nothing on error" do
    source = start!(all_kinds())
    record_some(source)
    {:ok, exported} = Metrics.Cluster.export(source)
    target = Native.metrics_new(Enum.map(Metrics.Instance.meta!(source), & &1.spec))

    bad = [
      [{"web_req_count_total", :counter, ["route"], 0, [{["/a"], {:counter, -1}}]}],
      [{"web_req_count_total", :counter, ["route"], 0, [{["/a"], {:gauge, 1}}]}],
      [{"web_req_duration", :summary, ["route"], 0, [{["/a"], {:histogram, "nope", nil}}]}],
      [{"web_req_count_total", :kind, ["route"], 0, []}],
      [{"web_req_count_total", :counter, ["route"], 0, [{["/a", "extra"], {:counter, 1}}]}],
      [:garbage]
    ]

    for exported <- bad do
      assert {:error, {:malformed, message}} = Native.metrics_import(target, exported, "n")
      assert is_binary(message)
    end

    incompatible = [{"web_req_count_total", :sum, ["route"], 0, []}]
    assert {:error, {:incompatible, _}} = Native.metrics_import(target, incompatible, "n")
    assert Native.metrics_info(target).series == 0

    assert {:error, {:malformed, _}} = Native.metrics_import(target, :not_a_list, "n")
    assert_raise ArgumentError, fn -> Native.metrics_import(make_ref(), exported, "n") end
    assert_raise ArgumentError, fn -> Native.metrics_export(:not_a_registry) end

    assert :ok = Native.metrics_import(target, exported, "n")
    assert Native.metrics_info(target).series == 5
  end
end
