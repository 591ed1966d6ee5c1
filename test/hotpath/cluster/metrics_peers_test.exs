defmodule Hotpath.Cluster.MetricsPeersTest do
  # Hotpath.Metrics.cluster_snapshot/2 and prometheus(name, cluster: true) on real nodes:
  # this node and two peers started with :peer for the whole module.
  use ExUnit.Case, async: false

  import Hotpath.ClusterCase
  alias Hotpath.{Histogram, Metrics}

  @moduletag :cluster

  setup_all do
    peers = start_peers(2)
    %{peers: peers, nodes: [node() | Enum.map(peers, & &1.node)]}
  end

  defp definitions do
    [
      Metrics.counter("jobs.done.count", tags: [:queue]),
      Metrics.sum("jobs.done.bytes", tags: [:queue]),
      Metrics.summary("jobs.done.duration", tags: [:queue]),
      Metrics.distribution("jobs.done.latency",
        tags: [:queue],
        reporter_options: [buckets: [10, 100, 1_000]]
      )
    ]
  end

  defp start_everywhere!(nodes, metrics) do
    name = :"cluster_metrics_#{System.unique_integer([:positive])}"
    spec = {Metrics, name: name, metrics: metrics, telemetry: false}
    Enum.each(nodes, &start_on(&1, spec))
    name
  end

  # Records `values` into every metric of `name` on `node`, with the queue tag.
  defp record_on(node, name, queue, values) do
    metrics = ["jobs.done.count", "jobs.done.bytes", "jobs.done.duration", "jobs.done.latency"]

    :ok =
      :erpc.call(node, Hotpath.ClusterCase, :record_many, [name, metrics, values, %{queue: queue}])
  end

  # Integers, so that every sum is exact whatever the order of additions.
  defp samples(seed, n), do: for(i <- 1..n, do: rem(i * seed * 7_919, 5_000) + 1)

  test "merged quantiles equal those of one histogram that recorded the union", %{nodes: nodes} do
    name = start_everywhere!(nodes, definitions())
    union = :"union_#{System.unique_integer([:positive])}"
    start_supervised!({Metrics, name: union, metrics: definitions(), telemetry: false})
    reference = Histogram.new()

    for {node, i} <- Enum.with_index(nodes, 1) do
      mail = samples(i, 400 * i)
      sms = samples(i + 10, 50)
      record_on(node, name, "mail", mail)
      record_on(node, name, "sms", sms)
      record_on(node(), union, "mail", mail)
      record_on(node(), union, "sms", sms)
      Enum.each(mail, &Histogram.record(reference, &1))
    end

    view = Metrics.cluster_snapshot(name)
    assert view.nodes == nodes
    assert view.failed == []
    assert view.metrics == Metrics.snapshot(union)

    # The quantiles of the merged "mail" summary are those of one Hotpath.Histogram that
    # recorded every node's values (same layout: the default relative error).
    mail = view.metrics |> Enum.find(&(&1.kind == :summary)) |> series("mail")
    assert mail.quantiles == Histogram.quantiles(reference, [0.5, 0.9, 0.99])
    assert mail.window.quantiles == mail.quantiles

    assert {mail.count, mail.sum, mail.min, mail.max} ==
             {Histogram.count(reference), Histogram.sum(reference), Histogram.min(reference),
              Histogram.max(reference)}

    # One scrape: the union's exposition, plus one "up" sample per node.
    text = IO.iodata_to_binary(Metrics.prometheus(name, cluster: true))
    [merged, up] = String.split(text, "# HELP hotpath_metrics_cluster_up ")
    assert merged == IO.iodata_to_binary(Metrics.prometheus(union))

    for n <- nodes do
      assert up =~ ~s(hotpath_metrics_cluster_up{node="#{n}"} 1\n)
    end
  end

  test "last values stay one series per node", %{nodes: nodes} do
    name = start_everywhere!(nodes, [Metrics.last_value("vm.queue.length", tags: [:queue])])

    for {n, i} <- Enum.with_index(nodes) do
      :erpc.call(n, Metrics, :record, [name, "vm.queue.length", i * 10, %{queue: "q"}])
    end

    %{metrics: [%{series: series}]} = Metrics.cluster_snapshot(name)

    assert Enum.sort_by(series, & &1.tags.node) ==
             nodes
             |> Enum.with_index()
             |> Enum.map(fn {n, i} ->
               %{tags: %{queue: "q", node: Atom.to_string(n)}, value: i * 10.0}
             end)
             |> Enum.sort_by(& &1.tags.node)
  end

  test "nodes that do not answer are reported, the others merged", %{
    peers: [slow, idle],
    nodes: nodes
  } do
    # The idle peer runs no instance of that name.
    name = start_everywhere!(nodes -- [idle.node], definitions())
    record_on(node(), name, "mail", [1, 2, 3])
    record_on(slow.node, name, "mail", [4])

    pid = pause(slow)

    view =
      try do
        Metrics.cluster_snapshot(name, timeout: 200)
      after
        resume(pid)
      end

    assert view.nodes == [node()]
    assert Enum.sort(view.failed) == Enum.sort([{slow.node, :timeout}, {idle.node, :not_running}])
    assert %{count: 3} = view.metrics |> Enum.find(&(&1.kind == :summary)) |> series("mail")

    # Once the slow node answers again, its values are in; `nodes:` picks who is asked.
    view = Metrics.cluster_snapshot(name, nodes: [node(), slow.node])
    assert view.failed == []
    assert %{count: 4} = view.metrics |> Enum.find(&(&1.kind == :summary)) |> series("mail")

    text = IO.iodata_to_binary(Metrics.prometheus(name, cluster: true))
    assert text =~ ~s(hotpath_metrics_cluster_up{node="#{idle.node}"} 0\n)
    assert text =~ ~s(hotpath_metrics_cluster_up{node="#{slow.node}"} 1\n)
  end

  test "a node whose definitions differ is reported incompatible", %{
    peers: [other, _],
    nodes: nodes
  } do
    name = :"cluster_metrics_#{System.unique_integer([:positive])}"
    start_on(node(), {Metrics, name: name, metrics: definitions(), telemetry: false})

    start_on(
      other.node,
      {Metrics,
       name: name,
       metrics: [Metrics.counter("jobs.done.count", tags: [:region])],
       telemetry: false}
    )

    view = Metrics.cluster_snapshot(name, nodes: Enum.take(nodes, 2))
    assert view.nodes == [node()]
    assert [{node, {:incompatible, message}}] = view.failed
    assert node == other.node
    assert message =~ "jobs_done_count_total"
  end

  defp series(%{series: series}, queue), do: Enum.find(series, &(&1.tags.queue == queue))
end
