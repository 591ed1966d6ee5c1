defmodule Hotpath.MetricsTest do
  use ExUnit.Case, async: true

  alias Hotpath.Metrics
  alias Hotpath.Metrics.{Definition, Handler}
  alias Hotpath.FakeTelemetry

  @compile {:no_warn_undefined, :telemetry}

  doctest Hotpath.Metrics
  doctest Hotpath.Metrics.Definition

  defp start!(metrics, opts \\ []) do
    name = :"metrics_#{System.unique_integer([:positive])}"

    start_supervised!({Metrics, [name: name, metrics: metrics] ++ opts})

    name
  end

  defp find(snapshot, name, kind) do
    Enum.find(snapshot, &(&1.name == name and &1.kind == kind))
  end

  describe "definitions" do
    test "plain builders mirror Telemetry.Metrics defaults" do
      d = Metrics.summary("my_app.repo.query.total_time", unit: {:native, :millisecond})
      assert d.event_name == [:my_app, :repo, :query]
      assert d.unit == :millisecond
      native = System.convert_time_unit(1, :millisecond, :native)
      assert_in_delta d.measurement.(%{total_time: native * 3}), 3.0, 1.0e-9
      assert d.measurement.(%{}) == nil
      assert Metrics.counter([:a, :b]).measurement == :b
      assert Metrics.sum("a.b", event_name: "x.y").event_name == [:x, :y]
      assert Metrics.last_value("a.b", unit: {:kilobyte, :byte}).measurement.(%{b: 2}) == 2000.0
    end

    test "Telemetry.Metrics structs are recognised by struct name" do
      for {mod, kind} <- [
            {Telemetry.Metrics.Counter, :counter},
            {Telemetry.Metrics.Sum, :sum},
            {Telemetry.Metrics.LastValue, :last_value},
            {Telemetry.Metrics.Summary, :summary},
            {Telemetry.Metrics.Distribution, :distribution}
          ] do
        tm = %{
          __struct__: mod,
          name: [:a, :b],
          event_name: [:a],
          measurement: :b,
          tags: [:t],
          tag_values: & &1,
          keep: nil,
          description: "d",
          unit: :unit,
          reporter_options: [buckets: [1, 2]]
        }

        assert %Definition{kind: ^kind, tags: [:t], description: "d"} = Definition.normalize!(tm)
      end
    end

    test "bad definitions raise ArgumentError" do
      assert_raise ArgumentError, ~r/at least two segments/, fn -> Metrics.counter("a") end
      assert_raise ArgumentError, ~r/metric names/, fn -> Metrics.counter("a..b") end
      assert_raise ArgumentError, ~r/metric names/, fn -> Metrics.counter(42) end
      assert_raise ArgumentError, ~r/metric names/, fn -> Metrics.counter(["a"]) end

      assert_raise ArgumentError, ~r/unknown options \[:bogus\]/, fn ->
        Metrics.sum("a.b", bogus: 1)
      end

      assert_raise ArgumentError, ~r/cannot convert/, fn ->
        Metrics.sum("a.b", unit: {:second, :byte})
      end

      assert_raise ArgumentError, ~r/unit must be/, fn -> Metrics.sum("a.b", unit: "s") end

      assert_raise ArgumentError, ~r/only one may be given/, fn ->
        Metrics.sum("a.b", keep: &is_map/1, drop: &is_map/1)
      end

      assert_raise ArgumentError, ~r/expected a metric/, fn -> Definition.normalize!(:nope) end
    end

    test "bad option values raise ArgumentError naming the option, the value and the metric" do
      where = ~s/(Hotpath.Metrics.sum\/2 of "a.b")/

      for {opts, message} <- [
            {[tags: :route], ":tags must be a list of at most 32 atoms, got: :route"},
            {[tags: [:a, "b"]], ~s/:tags must be a list of at most 32 atoms, got: [:a, "b"]/},
            {[tag_values: &Map.take/2], ":tag_values must be a function of arity 1, got: "},
            {[keep: true], ":keep must be nil, a function of arity 1 or a function of arity 2"},
            {[drop: 1], ":drop must be nil, a function of arity 1 or a function of arity 2"},
            {[description: 1], ":description must be nil or a UTF-8 string, got: 1"},
            {[description: <<255>>], ":description must be nil or a UTF-8 string, got: <<255>>"},
            {[unit: "s"],
             ~s/:unit must be an atom or {from, to} of two time or two byte units, got: "s"/},
            {[unit: {:second}], ":unit must be an atom or {from, to}"},
            {[event_name: "a..b"],
             ~s/:event_name must be a name, "a.b.c" or a non-empty list of atoms, got: "a..b"/},
            {[event_name: []], ":event_name must be a name"},
            {[event_name: [:a, "b"]], ":event_name must be a name"},
            {[reporter_options: [1]], ":reporter_options must be a keyword list, got: [1]"},
            {[reporter_options: %{buckets: [1]}], ":reporter_options must be a keyword list"},
            {[keep: &is_map/1, drop: &is_map/1], ":keep and :drop: only one may be given"}
          ] do
        error = assert_raise ArgumentError, fn -> Metrics.sum("a.b", opts) end
        assert error.message =~ message, "#{inspect(opts)}: #{error.message}"
        assert error.message =~ where, "#{inspect(opts)}: #{error.message}"
      end

      assert_raise ArgumentError, ~r/^:unit cannot convert :byte to :second/, fn ->
        Metrics.sum("a.b", unit: {:byte, :second})
      end

      assert_raise ArgumentError,
                   ~r/Hotpath.Metrics.sum\/2 of "a.b" options must be a keyword list/,
                   fn ->
                     Metrics.sum("a.b", :nope)
                   end

      # Good values still build the same definitions.
      d = Metrics.distribution("a.b.c", event_name: "x.y", tags: [], drop: &is_map/1)
      assert {d.event_name, d.measurement, d.tags, d.unit} == {[:x, :y], :c, [], :unit}
      assert d.keep.(:not_a_map) and not d.keep.(%{})
      assert Metrics.counter("a.b", description: nil, keep: nil).description == nil
    end

    test "the fields of a Telemetry.Metrics struct are checked like the options" do
      tm = %{
        __struct__: Telemetry.Metrics.Sum,
        name: [:a, :b],
        event_name: [:a],
        measurement: :b,
        tags: [],
        tag_values: & &1,
        keep: nil,
        description: nil,
        unit: :unit,
        reporter_options: []
      }

      for {field, value, message} <- [
            {:tag_values, :nope, ":tag_values must be a function of arity 1, got: :nope"},
            {:keep, :nope, ":keep must be nil, a function of arity 1 or a function of arity 2"},
            {:description, 1, ":description must be nil or a UTF-8 string, got: 1"},
            {:unit, {:native, :second}, ":unit must be an atom, got: {:native, :second}"},
            {:reporter_options, :nope, ":reporter_options must be a keyword list, got: :nope"}
          ] do
        error =
          assert_raise ArgumentError, fn -> Definition.normalize!(%{tm | field => value}) end

        assert error.message =~ message
        assert error.message =~ "(Telemetry.Metrics.Sum [:a, :b])"
      end

      # nil tag_values and reporter_options take their defaults, as before.
      d = Definition.normalize!(%{tm | tag_values: nil, reporter_options: nil})
      assert d.tag_values == (&Definition.identity/1) and d.reporter_options == []
    end
  end

  describe "start_link/1" do
    test "bad options raise ArgumentError in the caller" do
      for {opts, message} <- [
            {[], ~r/missing required option :name/},
            {[name: "x"], ~r/:name must be a non-nil, non-boolean atom/},
            {[name: :x, bogus: 1], ~r/unknown options \[:bogus\], valid options are/},
            {[name: :x, max_series: 0], ~r/max_series must be an integer in 1\.\.10000000/},
            {[name: :x, prune_every: -1], ~r/prune_every/},
            {[name: :x, telemetry: :yes], ~r/telemetry must be a boolean/},
            {[name: :x, metrics: :nope], ~r/metrics must be a list/},
            {[name: :x, metrics: [:nope]], ~r/expected a metric/},
            {[
               name: :x,
               metrics: [Metrics.distribution("a.b", reporter_options: [buckets: [2, 1]])]
             ], ~r/strictly increasing/},
            {[name: :x, metrics: [Metrics.summary("a.b", reporter_options: [quantiles: [2]])]],
             ~r/quantiles must be a non-empty list of numbers in 0\.\.1/},
            {[name: :x, metrics: [Metrics.summary("a.b", reporter_options: [window: 5])]],
             ~r/window must be/},
            {[name: :x, metrics: [Metrics.sum("a.b"), Metrics.sum("a.b")]],
             ~r/both be exported as "a_b_total"/},
            {[name: :x, metrics: [Metrics.distribution("a.b", tags: [:le])]],
             ~r/not a valid label name/},
            {[name: :x, metrics: [%{Metrics.sum("a.b") | tags: ["t"]}]],
             ~r/tags must be a list of at most 32 atoms/}
          ] do
        assert_raise ArgumentError, message, fn -> Metrics.start_link(opts) end
      end

      assert_raise ArgumentError, ~r/keyword list/, fn ->
        Metrics.start_link(Hotpath.Opaque.value(:x))
      end

      # child_spec/1 validates the same options, in the caller.
      assert_raise ArgumentError, ~r/max_series must be/, fn ->
        Metrics.child_spec(name: :x, max_series: 0)
      end

      assert_raise ArgumentError, ~r/expected a metric/, fn ->
        Metrics.child_spec(name: :x, metrics: [:nope])
      end
    end
  end

  describe "record/4" do
    test "a float tag value has one text on every path, apart from an equal integer" do
      name = start!([Metrics.counter("floats.seen.count", tags: [:a, :b])])

      for tags <- [
            %{a: 1.0, b: "x"},
            %{a: 1, b: "x"},
            %{a: 1.0e20, b: "x"},
            # A map that needs converting anyway (a tuple) gives the same texts.
            %{a: 1.0, b: {:x}},
            %{a: 1.0e20, b: {:x}}
          ] do
        :ok = Metrics.record(name, "floats.seen.count", nil, tags)
      end

      %{series: series} = name |> Metrics.snapshot() |> find([:floats, :seen, :count], :counter)

      assert series |> Enum.map(&{&1.tags.a, &1.tags.b, &1.value}) |> Enum.sort() == [
               {"1", "x", 1},
               {"1.0", "x", 1},
               {"1.0", "{:x}", 1},
               {"1.0e20", "x", 1},
               {"1.0e20", "{:x}", 1}
             ]
    end

    test "atom tag values are told apart by their identity on the native path" do
      # The series memo and the limiter keys read an atom by its term word (term.rs): 200
      # atoms recorded i times each, in a shuffled order, keep exactly their own counts.
      name = start!([Metrics.counter("atoms.seen.count", tags: [:kind, :other])])
      atoms = for i <- 1..200, do: {:"kind_#{i}", i}

      atoms
      |> Enum.flat_map(fn {atom, i} -> List.duplicate(atom, i) end)
      |> Enum.shuffle()
      |> Enum.each(&(:ok = Metrics.record(name, "atoms.seen.count", nil, %{kind: &1, other: :x})))

      %{series: series} = name |> Metrics.snapshot() |> find([:atoms, :seen, :count], :counter)
      counts = Map.new(series, &{&1.tags.kind, &1.value})
      assert counts == Map.new(atoms, fn {atom, i} -> {Atom.to_string(atom), i} end)
    end

    test "every kind, by string or atom-list name, with tags" do
      name =
        start!([
          Metrics.counter("http.request.stop.duration", tags: [:route, :method]),
          Metrics.distribution("http.request.stop.duration",
            tags: [:route, :method],
            reporter_options: [buckets: [1, 10]]
          ),
          Metrics.sum("http.request.stop.bytes"),
          Metrics.last_value("vm.memory.total"),
          Metrics.summary("repo.query.time", tags: [:repo])
        ])

      tags = %{route: "/users", method: "GET", extra: :ignored}
      assert :ok = Metrics.record(name, "http.request.stop.duration", 10, tags)
      assert :ok = Metrics.record(name, [:http, :request, :stop, :duration], 0.5, tags)
      assert :ok = Metrics.record(name, "http.request.stop.bytes", 0.1)
      assert :ok = Metrics.record(name, "http.request.stop.bytes", 0.2)
      assert :ok = Metrics.record(name, "vm.memory.total", 100)
      assert :ok = Metrics.record(name, "vm.memory.total", 99)
      assert :ok = Metrics.record(name, "repo.query.time", 4, %{repo: MyApp.Repo})

      snap = Metrics.snapshot(name)
      counter = find(snap, [:http, :request, :stop, :duration], :counter)
      assert [%{tags: %{route: "/users", method: "GET"}, value: 2}] = counter.series
      dist = find(snap, [:http, :request, :stop, :duration], :distribution)

      assert [%{count: 2, sum: 10.5, buckets: [{1.0, 1}, {10.0, 1}, {:infinity, 0}]}] =
               dist.series

      assert [%{value: 0.30000000000000004}] =
               find(snap, [:http, :request, :stop, :bytes], :sum).series

      assert [%{value: 99.0}] = find(snap, [:vm, :memory, :total], :last_value).series
      [summary] = find(snap, [:repo, :query, :time], :summary).series
      assert summary.tags == %{repo: "Elixir.MyApp.Repo"}
      assert summary.quantiles == %{0.5 => 4.0, 0.9 => 4.0, 0.99 => 4.0}
      assert summary.window.count == 1
    end

    test "tag values of any type become labels" do
      name = start!([Metrics.counter("a.b", tags: [:t])])

      for v <- ["s", :atom, 12, -3, 1.5, nil, {:tuple, 1}, self(), <<255>>, :é] do
        assert :ok = Metrics.record(name, "a.b", nil, %{t: v})
      end

      labels = for s <- hd(Metrics.snapshot(name)).series, do: s.tags.t
      assert "s" in labels and "atom" in labels and "12" in labels and "-3" in labels
      assert "1.5" in labels and "" in labels and "{:tuple, 1}" in labels
      assert "é" in labels and "<<255>>" in labels
    end

    test "values that render the same label share a series, repeated or not" do
      name = start!([Metrics.counter("a.b", tags: [:t, :u])])

      # Each pair twice: the second call of a pair is found in this process's scheduler memo.
      for {t, u} <- [{"get", 1}, {:get, "1"}, {"get", 1}, {:get, "1"}, {"get", :"1"}] do
        assert :ok = Metrics.record(name, "a.b", nil, %{t: t, u: u, extra: make_ref()})
      end

      assert [%{tags: %{t: "get", u: "1"}, value: 5}] = hd(Metrics.snapshot(name)).series
    end

    test "the memo's A/B switch (bench feature): the plain lookup records into the same series" do
      name = start!([Metrics.counter("a.b", tags: [:t]), Metrics.distribution("a.b", tags: [:t])])
      registry = Hotpath.Metrics.Instance.registry!(name)
      config = %{registry: name, metrics: [{0, :counter, :b, nil, &Definition.identity/1}]}

      # With the memo, without it (bits 1: every call resolves its series), and with it again.
      for bits <- [0, 1, 0] do
        assert :ok = Hotpath.Native.bench_metrics_variant(registry, bits)

        for t <- ["x", :x, "y"] do
          assert :ok = Metrics.record(name, "a.b", 2, %{t: t})
          assert :ok = Handler.handle_event([:a], %{b: 1}, %{t: t}, config)
        end
      end

      assert_raise ArgumentError, fn -> Hotpath.Native.bench_metrics_variant(make_ref(), 1) end
      snap = Metrics.snapshot(name)

      assert [%{tags: %{t: "x"}, value: 12}, %{tags: %{t: "y"}, value: 6}] =
               find(snap, [:a, :b], :counter).series

      assert [%{tags: %{t: "x"}, count: 6, sum: 12.0}, %{tags: %{t: "y"}, count: 3, sum: 6.0}] =
               find(snap, [:a, :b], :distribution).series
    end

    test "a series pruned away is created again by the next record, memo or not" do
      name = start!([Metrics.distribution("a.b", tags: [:t])])
      for _ <- 1..3, do: Metrics.record(name, "a.b", 1.0, %{t: "x"})
      assert Metrics.prune(name) == 0
      assert Metrics.prune(name) == 1
      assert [] = hd(Metrics.snapshot(name)).series

      # The same call as before: the memo must not send it to the removed series.
      for _ <- 1..2, do: Metrics.record(name, "a.b", 2.0, %{t: "x"})
      assert [%{tags: %{t: "x"}, count: 2, sum: 4.0}] = hd(Metrics.snapshot(name)).series
    end

    test "bad inputs raise ArgumentError" do
      name = start!([Metrics.sum("a.b", tags: [:t])])

      assert_raise Hotpath.NotRunningError, ~r/no Hotpath.Metrics named :nope/, fn ->
        Metrics.record(:nope, "a.b", 1)
      end

      assert_raise ArgumentError, ~r/no metric named "x.y".*known metrics: \["a.b"\]/, fn ->
        Metrics.record(name, "x.y", 1, %{t: 1})
      end

      assert_raise ArgumentError, ~r/no metric named 42/, fn -> Metrics.record(name, 42, 1) end

      for fun <- [&Metrics.snapshot/1, &Metrics.prometheus/1, &Metrics.prune/1, &Metrics.info/1] do
        assert_raise Hotpath.NotRunningError, ~r/no Hotpath.Metrics named :nope/, fn ->
          fun.(:nope)
        end

        assert_raise ArgumentError, fn -> fun.("not an atom") end
      end

      for bad <- [nil, "1", :one, [1]] do
        assert_raise ArgumentError, ~r/value must be a number/, fn ->
          Metrics.record(name, "a.b", bad, %{t: 1})
        end
      end

      assert_raise ArgumentError, ~r/needs the tags \[:t\]/, fn ->
        Metrics.record(name, "a.b", 1, %{})
      end

      assert_raise ArgumentError, ~r/tags must be a map/, fn ->
        Metrics.record(name, "a.b", 1, t: 1)
      end

      assert :ok = Metrics.record(name, "a.b", 2 ** 70, %{t: 1})

      assert_raise ArgumentError, ~r/too large/, fn ->
        Metrics.record(name, "a.b", 10 ** 400, %{t: 1})
      end

      assert [%{series: [%{value: value}]}] = Metrics.snapshot(name)
      assert value == :math.pow(2, 70)
    end

    test "handles record into pre-resolved series and keep them from pruning" do
      name =
        start!([
          Metrics.counter("jobs.run.duration", tags: [:queue]),
          Metrics.summary("jobs.run.duration", tags: [:queue])
        ])

      h = Metrics.handle(name, "jobs.run.duration", %{queue: :mail})
      # A handle that dies with its process stops pinning its series.
      task =
        Task.async(fn -> Metrics.handle(name, [:jobs, :run, :duration], %{queue: {:odd, 1}}) end)

      assert is_reference(Task.await(task))
      # The task replies before it exits: wait until its own reference to the handle is gone.
      monitor = Process.monitor(task.pid)
      assert_receive {:DOWN, ^monitor, :process, _, _}
      :erlang.garbage_collect()
      for v <- [1, 2.5, 2 ** 70], do: assert(:ok = Metrics.record_handle(h, v))
      assert Metrics.prune(name) == 0
      assert Metrics.prune(name) == 2, "both series of {:odd, 1} are idle and unpinned"
      snap = Metrics.snapshot(name)

      assert [%{tags: %{queue: "mail"}, value: 3}] =
               find(snap, [:jobs, :run, :duration], :counter).series

      assert_raise ArgumentError, ~r/value must be a number/, fn ->
        Metrics.record_handle(h, "1")
      end

      assert_raise ArgumentError, ~r/expected a handle/, fn ->
        Metrics.record_handle(make_ref(), 1)
      end

      assert_raise Hotpath.NotRunningError, ~r/no Hotpath.Metrics named/, fn ->
        Metrics.handle(:nope, "a.b")
      end

      assert_raise ArgumentError, ~r/no metric named/, fn -> Metrics.handle(name, "x.y") end

      assert_raise ArgumentError, ~r/needs the tags/, fn ->
        Metrics.handle(name, "jobs.run.duration")
      end
    end

    test "cardinality cap and pruning" do
      name = start!([Metrics.counter("a.b", tags: [:id], reporter_options: [max_series: 3])])
      for i <- 1..10, do: Metrics.record(name, "a.b", nil, %{id: i})
      [%{series: series}] = Metrics.snapshot(name)
      assert length(series) == 4
      assert %{tags: %{id: "_overflow_"}, value: 7} = List.last(series)
      assert Metrics.info(name).series == 3
      assert Metrics.prune(name) == 0
      Metrics.record(name, "a.b", nil, %{id: 1})
      assert Metrics.prune(name) == 2
      assert Metrics.info(name).series == 1
    end

    test "exact totals from many processes" do
      name =
        start!([
          Metrics.distribution("a.b", tags: [:shard], reporter_options: [buckets: [50]]),
          Metrics.counter("a.b", tags: [:shard])
        ])

      procs = System.schedulers_online() * 4

      1..procs
      |> Enum.map(fn p ->
        Task.async(fn ->
          for i <- 1..2_000, do: Metrics.record(name, "a.b", rem(i, 100), %{shard: rem(p, 3)})
        end)
      end)
      |> Task.await_many(60_000)

      snap = Metrics.snapshot(name)

      assert Enum.sum(for s <- find(snap, [:a, :b], :counter).series, do: s.value) ==
               procs * 2_000

      dist = find(snap, [:a, :b], :distribution).series
      assert Enum.sum(for s <- dist, do: s.count) == procs * 2_000
      assert Enum.sum(for s <- dist, do: s.sum) == procs * 20 * Enum.sum(0..99) / 1
    end

    test "exact bucket counts from many processes, whatever shard a value lands in" do
      # One owned shard per series and the shared one; values both few (sparse slots) and
      # spread (dense blocks).
      name =
        start!([
          Metrics.distribution("c.d", tags: [:k], reporter_options: [buckets: [1, 10, 100]]),
          Metrics.summary("c.d",
            tags: [:k],
            reporter_options: [quantiles: [0.5, 0.99], prometheus_name: "c_d_summary"]
          )
        ])

      values = [1.5, 3.2, 7.7, 12.5, 39.0] ++ Enum.map(1..300, &(&1 * 1.37))
      procs = System.schedulers_online() * 8

      1..procs
      |> Enum.map(fn p ->
        Task.async(fn ->
          for k <- 1..4,
              v <- Enum.shuffle(values),
              do: Metrics.record(name, "c.d", v, %{k: rem(k + p, 4)})
        end)
      end)
      |> Task.await_many(60_000)

      reference = Hotpath.Histogram.new(buckets: [1, 10, 100])
      for _ <- 1..procs, v <- values, do: Hotpath.Histogram.record(reference, v)
      want = Hotpath.Histogram.snapshot(reference)
      snap = Metrics.snapshot(name)

      for kind <- [:distribution, :summary], s <- find(snap, [:c, :d], kind).series do
        assert s.count == procs * length(values)
        assert s.quantiles[0.5] == Hotpath.Histogram.quantile(reference, 0.5)
        assert s.quantiles[0.99] == Hotpath.Histogram.quantile(reference, 0.99)
        assert {s.min, s.max} == {want.min, want.max}
      end

      for s <- find(snap, [:c, :d], :distribution).series,
          do: assert(s.buckets == want.buckets)
    end

    test "a series' memory does not grow with the processes that record into it" do
      name =
        start!(
          [
            Metrics.distribution("e.f",
              tags: [:k],
              reporter_options: [buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]]
            )
          ],
          max_series: 100
        )

      record = fn procs ->
        1..procs
        |> Enum.map(fn p ->
          Task.async(fn ->
            for k <- 1..50,
                v <- [1.5, 3.2, 7.7, 12.5, 39.0],
                do: Metrics.record(name, "e.f", v, %{k: rem(k + p, 50)})
          end)
        end)
        |> Task.await_many(60_000)

        Metrics.info(name).memory_bytes
      end

      one = record.(1)
      many = record.(System.schedulers_online() * 16)
      # At most one more shard (the shared one) per series, whatever the number of threads.
      assert many <= 2 * one
      assert div(many, 50) <= 1536
    end
  end

  describe "telemetry handler" do
    test "attaches one handler per event and detaches on stop" do
      name =
        start!([
          Metrics.counter("web.stop.duration"),
          Metrics.distribution("web.stop.duration"),
          Metrics.sum("db.query.rows")
        ])

      assert FakeTelemetry.handler_ids([:web, :stop]) == [{Metrics, name, [:web, :stop]}]
      assert FakeTelemetry.handler_ids([:db, :query]) == [{Metrics, name, [:db, :query]}]
      FakeTelemetry.execute([:web, :stop], %{duration: 5}, %{})
      FakeTelemetry.execute([:db, :query], %{rows: 3}, %{})
      snap = Metrics.snapshot(name)
      assert [%{value: 1}] = find(snap, [:web, :stop, :duration], :counter).series
      assert [%{count: 1}] = find(snap, [:web, :stop, :duration], :distribution).series

      stop_supervised!({Metrics, name})
      assert FakeTelemetry.handler_ids([:web, :stop]) == []
      assert FakeTelemetry.handler_ids([:db, :query]) == []
      assert_raise Hotpath.NotRunningError, fn -> Metrics.snapshot(name) end

      assert_raise Hotpath.NotRunningError, ~r/no Hotpath.Metrics named/, fn ->
        Metrics.record(name, "db.query.rows", 1)
      end

      # The same name again is a fresh instance.
      start_supervised!({Metrics, name: name, metrics: [Metrics.sum("db.query.rows")]})

      assert :ok = Metrics.record(name, "db.query.rows", 2)
      assert [%{series: [%{value: 2.0}]}] = Metrics.snapshot(name)
    end

    test "bad measurements and tags are dropped and counted; the handler stays attached" do
      name =
        start!([
          Metrics.sum("ev.stop.value", tags: [:route]),
          Metrics.sum("ev.stop.value2",
            event_name: [:ev, :stop],
            measurement: fn _ -> raise "boom" end
          ),
          Metrics.counter("ev.stop.count", keep: &(&1[:keep] != false))
        ])

      for {measurements, metadata} <- [
            {%{value: 1}, %{route: "/a"}},
            {%{value: "1"}, %{route: "/a"}},
            {%{value: nil}, %{route: "/a"}},
            {%{}, %{route: "/a"}},
            {%{value: :nan}, %{route: "/a"}},
            {%{value: 2}, %{}},
            {:not_a_map, %{route: "/a"}},
            {%{value: 3}, :not_a_map},
            {%{value: 4}, %{route: "/b", keep: false}}
          ] do
        FakeTelemetry.execute([:ev, :stop], measurements, metadata)
      end

      assert FakeTelemetry.handler_ids([:ev, :stop]) == [{Metrics, name, [:ev, :stop]}]
      snap = Metrics.snapshot(name)
      sum = find(snap, [:ev, :stop, :value], :sum)
      assert sum.dropped == 7

      assert Enum.sort(for s <- sum.series, do: {s.tags.route, s.value}) == [
               {"/a", 1.0},
               {"/b", 4.0}
             ]

      assert find(snap, [:ev, :stop, :value2], :sum).dropped == 9
      assert [%{value: 7}] = find(snap, [:ev, :stop, :count], :counter).series
      assert find(snap, [:ev, :stop, :count], :counter).dropped == 1

      text = IO.iodata_to_binary(Metrics.prometheus(name))
      assert text =~ ~s(hotpath_metrics_dropped_total{metric="ev_stop_value_total"} 7\n)
    end

    test "handle_event/4 ignores a config it does not know" do
      assert Handler.handle_event([:x], %{}, %{}, :junk) == :ok

      assert Handler.handle_event([:x], %{v: 1}, %{}, %{
               registry: :no_such_instance,
               metrics: [{0, :sum, :v, nil, & &1}]
             }) == :ok

      assert Handler.handle_event([:x], %{}, %{}, %{
               registry: make_ref(),
               metrics: [{0, :sum, :v, nil, & &1}]
             }) == :ok
    end

    @tag skip:
           if(Code.ensure_loaded?(:telemetry),
             do: false,
             else: "the :telemetry package is not installed"
           )
    test "attaches to the real :telemetry" do
      name = :"real_telemetry_#{System.unique_integer([:positive])}"
      start_supervised!({Metrics, name: name, metrics: [Metrics.counter("real.ev.x")]})
      :telemetry.execute([:real, :ev], %{x: 1}, %{})
      assert [%{series: [%{value: 1}]}] = Metrics.snapshot(name)
    end
  end

  describe "prometheus/1" do
    test "passes promtool check metrics" do
      name =
        start!([
          Metrics.counter("http.request.stop.duration",
            tags: [:route, :method],
            description: "Requests, with \\ and\nnewline"
          ),
          Metrics.distribution("http.request.stop.duration",
            tags: [:route],
            unit: {:native, :millisecond}
          ),
          Metrics.summary("repo.query.total_time", tags: [:source]),
          Metrics.sum("repo.query.rows"),
          Metrics.last_value("vm.memory.bytes", unit: :byte)
        ])

      for route <- ["/a", ~s(/quote"d), "/back\\slash", "/new\nline", "/ünï"] do
        Metrics.record(name, "http.request.stop.duration", 12, %{route: route, method: "GET"})
      end

      Metrics.record(name, "repo.query.total_time", 3.5, %{source: "users"})
      Metrics.record(name, "repo.query.rows", 0.1)
      Metrics.record(name, "vm.memory.bytes", 123_456_789)

      text = IO.iodata_to_binary(Metrics.prometheus(name))
      assert text =~ ~s(# TYPE http_request_stop_duration histogram\n)
      assert text =~ ~s(http_request_stop_duration_bucket{route="/a",le="5.0"} 0\n)
      assert text =~ ~s(http_request_stop_duration_bucket{route="/a",le="+Inf"} 1\n)
      assert text =~ ~s(http_request_stop_duration_total{route="/quote\\"d",method="GET"} 1\n)

      assert text =~
               ~s(# HELP http_request_stop_duration_total Requests, with \\\\ and\\nnewline\n)

      assert text =~ ~s(repo_query_total_time{source="users",quantile="0.99"} 3.5\n)
      assert text =~ ~s(vm_memory_bytes 123456789.0\n)
      assert String.ends_with?(text, "\n")
      assert Metrics.content_type() =~ "version=0.0.4"

      {output, status} = Hotpath.Test.Promtool.check(text)
      assert status == 0, "promtool rejected the exposition:\n#{output}\n#{text}"
    end

    test "OpenMetrics text passes the official parser (prometheus-client)" do
      name =
        start!([
          Metrics.counter("http.request.stop.duration",
            tags: [:route, :method],
            description: ~s(Requests, "quoted", with \\ and\nnewline)
          ),
          Metrics.distribution("http.request.stop.duration",
            tags: [:route],
            unit: {:native, :millisecond}
          ),
          Metrics.counter("jobs.done", tags: [:queue]),
          Metrics.summary("repo.query.total_time", tags: [:source]),
          Metrics.sum("balance.change"),
          Metrics.last_value("vm.memory.bytes", unit: :byte)
        ])

      for route <- ["/a", ~s(/quote"d), "/back\\slash", "/new\nline", "/ünï"] do
        Metrics.record(name, "http.request.stop.duration", 12, %{route: route, method: "GET"})
      end

      Metrics.record(name, "jobs.done", nil, %{queue: "default"})
      Metrics.record(name, "repo.query.total_time", 3.5, %{source: "users"})
      Metrics.record(name, "balance.change", 10)
      Metrics.record(name, "balance.change", -17)
      Metrics.record(name, "vm.memory.bytes", 123_456_789)

      text = IO.iodata_to_binary(Metrics.prometheus(name, format: :openmetrics))
      assert String.ends_with?(text, "\n# EOF\n")
      assert text =~ ~s(# TYPE jobs_done counter\njobs_done_total{queue="default"} 1\n)
      # A sum can go down (an OpenMetrics counter cannot), and this counter's name without
      # `_total` is the distribution's: both keep their names, typed `unknown`.
      assert text =~ ~s(# TYPE balance_change_total unknown\nbalance_change_total -7.0\n)
      assert text =~ ~s(# TYPE http_request_stop_duration_total unknown\n)
      assert text =~ ~s(# HELP http_request_stop_duration_total Requests, \\"quoted\\", with)

      assert {:ok, samples} = Hotpath.Test.OpenMetricsParser.parse(text)
      assert "counter jobs_done_total [('queue', 'default')] 1" in samples
      assert "unknown balance_change_total [] -7.0" in samples
      assert "histogram http_request_stop_duration_count [('route', '/ünï')] 1" in samples
      assert "gauge vm_memory_bytes [] 123456789.0" in samples

      # The Prometheus text of the same registry still passes promtool (which reads only
      # that format: OpenMetrics' `unknown` type and escaped `"` in HELP are not in it).
      {output, status} =
        Hotpath.Test.Promtool.check(IO.iodata_to_binary(Metrics.prometheus(name)))

      assert status == 0, output

      assert_raise ArgumentError, ~r/:format must be one of/, fn ->
        Metrics.prometheus(name, format: :json)
      end

      # The cluster view (of this node alone here) in OpenMetrics: its family, then `# EOF`.
      view = IO.iodata_to_binary(Metrics.prometheus(name, cluster: true, format: :openmetrics))
      assert view =~ ~r/hotpath_metrics_cluster_up\{node="[^"]+"\} 1\n# EOF\n\z/
      assert {:ok, _} = Hotpath.Test.OpenMetricsParser.parse(view)

      # And in protobuf: length-delimited families, the cluster family last.
      pb = Metrics.prometheus(name, cluster: true, format: :protobuf)
      assert is_binary(pb) and pb =~ "hotpath_metrics_cluster_up"
      refute pb =~ "# EOF"
    end

    test "a large registry renders on a dirty scheduler" do
      name = start!([Metrics.distribution("big.one", tags: [:id])])
      for i <- 1..2_000, do: Metrics.record(name, "big.one", i, %{id: i})
      text = IO.iodata_to_binary(Metrics.prometheus(name))
      assert length(String.split(text, "big_one_count{")) == 2_001
      {output, status} = Hotpath.Test.Promtool.check(text)
      assert status == 0, output
    end
  end
end
