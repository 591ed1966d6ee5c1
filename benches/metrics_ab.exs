# The A/B row of the record path's native trick (issue #15): the per-thread series memo
# (`hotpath_core::metrics::memo`) against the plain lookup, both compiled into one library
# (the `bench` cargo feature, which `make bench` enables, adds a per-instance switch:
# `Hotpath.Native.bench_metrics_variant/2`), measured in the same run on the paths users call:
# a `:telemetry.execute/3` event into `Hotpath.Metrics`, and `Hotpath.Metrics.record/4`. The
# trick stays only while its plain version costs at least 15% more on that path. (The
# hand-made hash `fasthash`, A/B'd here against aHash before it was removed, has its rows in
# benches/RESULTS.md; instruction counts: native/hotpath_core/examples/record_path_ab.rs.)
#
#     HOTPATH_CARGO_FEATURES=bench MIX_ENV=prod mix run benches/metrics_ab.exs
#
# The real :telemetry is used when it is loaded (e.g. `elixir -pa <telemetry>/ebin -S mix run
# benches/metrics_ab.exs`); otherwise a stand-in with :telemetry 1.x's dispatch (one ETS
# lookup of the event's handlers, each applied inside try/catch).
Code.require_file("support/harness.exs", __DIR__)

defmodule Bench.MetricsAB do
  @compile {:no_warn_undefined, :telemetry}

  alias Hotpath.{Metrics, Native}

  # bench_metrics_variant bits (native/hotpath_nif/src/metrics/mod.rs)
  @plain_lookup 1
  @variants [{"memo (library)", 0}, {"no memo", @plain_lookup}]

  # :telemetry 1.x's dispatch, for a VM without the package: the handlers of an event from one
  # ETS lookup, each applied inside try/catch (a raising handler is detached).
  defmodule Dispatch do
    @moduledoc false
    @table :bench_metrics_ab_handlers

    def start do
      if :ets.whereis(@table) == :undefined do
        :ets.new(@table, [:duplicate_bag, :public, :named_table, read_concurrency: true])
      end

      :ok
    end

    def attach(id, event, fun, config) do
      start()
      :ets.insert(@table, {event, id, fun, config})
      :ok
    end

    def detach(id) do
      :ets.match_delete(@table, {:_, id, :_, :_})
      :ok
    end

    def execute(event, measurements, metadata) do
      Enum.each(:ets.lookup(@table, event), fn {_, id, fun, config} ->
        try do
          fun.(event, measurements, metadata, config)
        catch
          _, _ -> detach(id)
        end
      end)
    end
  end

  def run do
    if function_exported?(Native, :bench_metrics_variant, 2) and variants_loaded?() do
      bench()
    else
      IO.puts(
        "\n## Native tricks, A/B: the record path of Hotpath.Metrics\n\nSkipped: the NIF was " <>
          "built without the `bench` feature (HOTPATH_CARGO_FEATURES=bench, as `make bench` sets).\n"
      )
    end
  end

  defp variants_loaded? do
    Native.bench_metrics_variant(make_ref(), 0)
    true
  rescue
    ArgumentError -> true
    _ -> false
  end

  defp bench do
    telemetry = telemetry_module()
    routes = for r <- ~w(/ /users /users/:id /posts /posts/:id /login /api/items /metrics), do: r
    tag_sets = List.to_tuple(for r <- routes, m <- ["GET", "POST"], do: %{route: r, method: m})
    tags = fn i -> elem(tag_sets, rem(i, 16)) end
    # Native durations (integers), ~0.1-1 ms at a 1 ns native unit.
    durations = List.to_tuple(for i <- 1..1024, do: %{duration: 100_000 + rem(i * 7919, 900_000)})
    measurements = fn i -> elem(durations, Bitwise.band(i, 1023)) end

    instances =
      for {{label, bits}, n} <- Enum.with_index(@variants) do
        name = :"bench_metrics_ab_#{n}"
        event = [:bench_ab, :router_dispatch, :"v#{n}"]

        {:ok, _} =
          Metrics.start_link(
            name: name,
            metrics: [
              Metrics.distribution(Enum.join(event ++ [:duration], "."),
                unit: {:native, :millisecond},
                tags: [:route, :method]
              )
            ]
          )

        :ok = Native.bench_metrics_variant(Hotpath.Metrics.Instance.registry!(name), bits)
        %{label: label, name: name, event: event, metric: Enum.join(event ++ [:duration], ".")}
      end

    telemetry.attach("bench-metrics-ab-noop", [:bench_ab, :noop], &__MODULE__.noop/4, nil)

    event_cases =
      for %{label: label, event: event} <- instances do
        {"event, #{label}", fn i -> telemetry.execute(event, measurements.(i), tags.(i)) end}
      end

    Hotpath.Bench.run(
      title: "Native tricks, A/B: a :telemetry event into Hotpath.Metrics",
      note:
        "`:telemetry.execute/3` (#{dispatch_note(telemetry)}) of a distribution with " <>
          "`unit: {:native, :millisecond}` and 2 binary tags (`route`, `method`; 16 tag sets " <>
          "in turn), into the handler `Hotpath.Metrics` attaches. One instance per row, " <>
          "switched by `bench_metrics_variant/2` (the `bench` feature): \"memo\" is the " <>
          "library's path; \"no memo\" resolves the series on every call as a memo miss " <>
          "does (tag values to label text, then the metric's map). \"telemetry dispatch\" " <>
          "is the same execute to a no-op handler.",
      cases:
        [
          {"empty NIF", fn -> Native.noop() end},
          {"telemetry dispatch",
           fn i -> telemetry.execute([:bench_ab, :noop], measurements.(i), tags.(i)) end}
        ] ++ event_cases,
      baselines: ["empty NIF", "event, memo (library)"],
      targets: [Hotpath.Bench.keep_trick("memo", "event, no memo", "event, memo (library)")]
    )

    value = fn i -> 0.1 + Bitwise.band(i, 1023) / 1024 end

    record_cases =
      for %{label: label, name: name, metric: metric} <- instances do
        {"record/4, #{label}", fn i -> Metrics.record(name, metric, value.(i), tags.(i)) end}
      end

    Hotpath.Bench.run(
      title: "Native tricks, A/B: Hotpath.Metrics.record/4",
      note:
        "The same instances through `Hotpath.Metrics.record/4` with the binary name " <>
          "(`\"bench_ab.router_dispatch.vN.duration\"`, 36 bytes) and the same tags.",
      cases: [{"empty NIF", fn -> Native.noop() end} | record_cases],
      baselines: ["empty NIF", "record/4, memo (library)"],
      targets: [Hotpath.Bench.keep_trick("memo", "record/4, no memo", "record/4, memo (library)")]
    )

    for %{name: name} <- instances, do: GenServer.stop(name)
    telemetry.detach("bench-metrics-ab-noop")
    if telemetry == Dispatch, do: Hotpath.Telemetry.put_module(:unknown)
  end

  def noop(_event, _measurements, _metadata, _config), do: :ok

  defp telemetry_module do
    if Code.ensure_loaded?(:telemetry) do
      {:ok, _} = Application.ensure_all_started(:telemetry)
      Hotpath.Telemetry.put_module(:telemetry)
      :telemetry
    else
      Dispatch.start()
      Hotpath.Telemetry.put_module(Dispatch)
      Dispatch
    end
  end

  defp dispatch_note(:telemetry), do: "the real :telemetry #{Application.spec(:telemetry, :vsn)}"

  defp dispatch_note(_),
    do:
      ":telemetry is not installed here: a stand-in with its dispatch, one ETS lookup and a guarded apply"
end

Hotpath.Bench.main(&Bench.MetricsAB.run/0)
