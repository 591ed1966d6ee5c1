defmodule Hotpath.Hostile.MetricsTest do
  # Issue 14: hostile terms for every public function of Hotpath.Metrics (PropEr from ExUnit).
  # Each call answers a documented value or raises ArgumentError: never :nif_panicked, another
  # exception or an exit, and the instance's owner never crashes. Hostile cluster answers land
  # under :failed.
  use ExUnit.Case, async: false

  alias Hotpath.{FakeTelemetry, Metrics, Native, Opaque}
  alias Hotpath.Metrics.Cluster

  @compile {:no_warn_undefined, [:proper, :proper_types]}
  no_proper = if Code.ensure_loaded?(:proper), do: false, else: "PropEr is not available"

  @names ["hostile.req.count", "hostile.req.time", [:hostile, :req, :count], "hostile.val"]

  defp definitions do
    [
      Metrics.counter("hostile.req.count", tags: [:route]),
      Metrics.summary("hostile.req.time", tags: [:route, :code]),
      Metrics.distribution("hostile.req.dist", reporter_options: [buckets: [1, 10]]),
      Metrics.sum("hostile.val"),
      Metrics.last_value("hostile.last.val", tags: [:k])
    ]
  end

  setup_all do
    name = :hostile_metrics
    stopped = :hostile_metrics_stopped
    {:ok, pid} = Metrics.start_link(name: stopped, metrics: definitions(), telemetry: false)
    GenServer.stop(pid)

    {:ok, owner} =
      Metrics.start_link(name: name, metrics: definitions())

    Process.unlink(owner)
    on_exit(fn -> if Process.alive?(owner), do: GenServer.stop(owner) end)
    %{name: name, owner: owner, stopped: stopped}
  end

  defp deep(0), do: []
  defp deep(n), do: [deep(n - 1)]

  # Terms chosen to break decoders: bignums, signed zeros, extreme floats, huge and invalid
  # binaries, improper and deep lists, big tuples and maps, pids, refs, funs, atoms. PropEr
  # generates an index into them (it never handles the large terms itself) or a small term.
  defp fixed do
    big = :binary.copy("x", 1_048_576)

    List.to_tuple([
      0,
      -1,
      2 ** 64,
      -(2 ** 64) - 1,
      2 ** 2000,
      0.0,
      -0.0,
      1.0e308,
      -1.0e308,
      5.0e-324,
      "",
      "ok",
      big,
      <<255, 254, 0>>,
      :binary.copy(<<255>>, 5000),
      [:a | :b],
      [1, 2 | 3],
      [:hostile, :req | :count],
      ["x" | "y"],
      deep(10_000),
      Enum.to_list(1..10_000),
      List.duplicate(:a, 100),
      {},
      {:a, 1},
      Tuple.duplicate(0, 10_000),
      %{},
      %{route: [:a | :b]},
      %{route: big, code: 1},
      %{route: deep(1000), code: {1, 2}},
      %{route: 2 ** 10_000, code: -0.0},
      %{route: <<255>>, code: self()},
      Map.new(1..1000, &{&1, &1}),
      self(),
      make_ref(),
      fn -> :ok end,
      &Kernel.+/2,
      nil,
      true,
      :hostile_metrics,
      :hostile_metrics_stopped,
      :no_such_instance,
      String.to_atom(String.duplicate("a", 255))
    ])
  end

  defp hostile do
    :proper_types.oneof([
      :proper_types.tuple([:fixed, :proper_types.integer(0, tuple_size(fixed()) - 1)]),
      :proper_types.tuple([
        :small,
        :proper_types.oneof([
          :proper_types.integer(),
          :proper_types.float(),
          :proper_types.binary(),
          :proper_types.atom(),
          :proper_types.list(:proper_types.oneof([:proper_types.atom(), :proper_types.integer()]))
        ])
      ])
    ])
  end

  # A generated choice: a valid term, or a hostile one.
  defp mixed(valid) do
    :proper_types.oneof([
      :proper_types.tuple([:valid, :proper_types.integer(0, length(valid) - 1)]),
      hostile()
    ])
  end

  # The term a generated choice stands for.
  defp term({:fixed, i}, _valid), do: elem(Process.get(:hostile_fixed), i)
  defp term({:small, t}, _valid), do: t
  defp term({:valid, i}, valid), do: Enum.at(valid, i)
  defp term(t), do: term(t, [])

  defp check(property, numtests \\ 300) do
    result = :proper.quickcheck(property, [{:numtests, numtests}, :quiet, :noshrink])
    assert result == true, "counterexample: #{inspect(:proper.counterexample(), limit: 20)}"
  end

  # The call answers or raises ArgumentError (Hotpath.NotRunningError for a stopped
  # instance); anything else fails the property.
  defp answers?(fun, ok?) do
    ok?.(fun.())
  rescue
    ArgumentError -> true
    Hotpath.NotRunningError -> true
  end

  @tags [
    %{route: "/a", code: 200, k: :x},
    %{route: :b, code: "x", k: 1},
    %{route: 1.5, code: nil}
  ]
  @values [1, 2.5, nil, -3]

  setup do
    Process.put(:hostile_fixed, fixed())
    :ok
  end

  @moduletag skip: no_proper

  test "record/4 and handle/3 answer :ok / a handle or raise ArgumentError", ctx do
    instances = [ctx.name, ctx.stopped]

    check(
      :proper.forall(
        {mixed(instances), mixed(@names), mixed(@values), mixed(@tags)},
        fn {instance, name, value, tags} ->
          {instance, name} = {term(instance, instances), term(name, @names)}
          {value, tags} = {term(value, @values), term(tags, @tags)}

          answers?(fn -> Metrics.record(instance, name, value, tags) end, &(&1 == :ok)) and
            answers?(fn -> Metrics.record(instance, name, value) end, &(&1 == :ok)) and
            answers?(fn -> Metrics.handle(instance, name, tags) end, &is_reference/1)
        end
      )
    )

    assert Process.alive?(ctx.owner)
  end

  test "record_handle/2 with hostile values", ctx do
    h = Metrics.handle(ctx.name, "hostile.req.time", %{route: "/h", code: 1})

    check(
      :proper.forall(hostile(), fn value ->
        value = term(value)

        answers?(fn -> Metrics.record_handle(h, value) end, &(&1 == :ok)) and
          answers?(fn -> Metrics.record_handle(value, 1) end, &(&1 == :ok))
      end)
    )
  end

  test "the telemetry handler never raises on hostile events", ctx do
    check(
      :proper.forall({mixed(@tags), mixed(@tags)}, fn {measurements, metadata} ->
        {measurements, metadata} = {term(measurements, @tags), term(metadata, @tags)}

        FakeTelemetry.execute([:hostile, :req], measurements, metadata) == :ok and
          FakeTelemetry.execute([:hostile, :req], %{count: 1, time: 2}, metadata) == :ok
      end)
    )

    # Still attached: a handler that raised would have been detached.
    assert {Metrics, ctx.name, [:hostile, :req]} in FakeTelemetry.handler_ids([:hostile])
    assert Process.alive?(ctx.owner)
  end

  test "reads answer their documented shapes or raise ArgumentError", ctx do
    instances = [ctx.name, ctx.stopped]
    opts = [[], [cluster: false], [timeout: 2 ** 32], [timeout: 10], [nodes: [node()]]]

    check(
      :proper.forall({mixed(instances), mixed(opts)}, fn {instance, opt} ->
        {instance, opts} = {term(instance, instances), term(opt, opts)}

        answers?(fn -> Metrics.snapshot(instance) end, &is_list/1) and
          answers?(fn -> Metrics.prometheus(instance) end, &is_binary/1) and
          answers?(fn -> Metrics.prometheus(instance, opts) end, &is_binary/1) and
          answers?(fn -> Metrics.cluster_snapshot(instance, opts) end, &is_map/1) and
          answers?(fn -> Metrics.info(instance) end, &is_map/1) and
          answers?(fn -> Metrics.prune(instance) end, &is_integer/1)
      end),
      100
    )

    assert Process.alive?(ctx.owner)
  end

  @def_names ["a.b", [:a, :b]]
  @def_opts [
    [],
    [tags: [:a]],
    [tags: :a],
    [unit: {:native, :millisecond}],
    [reporter_options: [buckets: [:a | :b]]],
    [description: <<255>>]
  ]
  @start_opts [
    [max_series: 2 ** 64],
    [prune_every: 2 ** 64],
    [telemetry: :yes],
    [metrics: [:a | :b]],
    []
  ]

  test "definitions and start_link answer or raise ArgumentError" do
    builders = [:counter, :sum, :last_value, :summary, :distribution]

    check(
      :proper.forall(
        {:proper_types.elements(builders), mixed(@def_names), mixed(@def_opts),
         mixed(@start_opts)},
        fn {kind, name, opts, start_opts} ->
          {name, opts} = {term(name, @def_names), term(opts, @def_opts)}
          start_opts = term(start_opts, @start_opts)

          answers?(fn -> apply(Metrics, kind, [name, opts]) end, &is_struct/1) and
            answers?(
              fn ->
                metrics =
                  try do
                    [apply(Metrics, kind, [name, opts])]
                  rescue
                    ArgumentError -> opts
                  end

                start_opts =
                  if is_list(start_opts) and Keyword.keyword?(start_opts),
                    do: [name: :hostile_start, telemetry: false, metrics: metrics] ++ start_opts,
                    else: start_opts

                case Metrics.start_link(start_opts) do
                  {:ok, pid} ->
                    GenServer.stop(pid)
                    true

                  {:error, _} ->
                    true
                end
              end,
              & &1
            )
        end
      )
    )
  end

  # A valid export with parts replaced by hostile terms, improper tails included: PropEr
  # generates the choices, `export/2` builds the term.
  defp export_type do
    field = mixed([:valid])

    :proper_types.tuple([
      :proper_types.integer(0, 2),
      :proper_types.tuple([field, field, field, field]),
      :proper_types.integer(0, 2),
      :proper_types.tuple([field, field]),
      hostile()
    ])
  end

  defp export({list_shape, metric_fields, series_shape, series_fields, other}, valid) do
    [{name, kind, labels, dropped, [{values, value} | _]} | _] = valid
    pick = fn choice, v -> if match?({:valid, _}, choice), do: v, else: term(choice) end
    {f0, f1, f2, f3} = metric_fields
    {s0, s1} = series_fields
    one = {pick.(s0, values), pick.(s1, value)}

    series =
      case series_shape do
        0 -> [one]
        1 -> [one | :tail]
        2 -> term(other)
      end

    metric = {pick.(f0, name), pick.(f1, kind), pick.(f2, labels), pick.(f3, dropped), series}

    case list_shape do
      0 -> [metric]
      1 -> [metric | :tail]
      2 -> term(other)
    end
  end

  defp answer?(:ok), do: true
  defp answer?({:error, _}), do: true
  defp answer?(_), do: false

  test "hostile cluster answers land under :failed, never raise", ctx do
    :ok = Metrics.record(ctx.name, "hostile.req.count", nil, %{route: "/a"})
    {:ok, valid} = Metrics.Cluster.export(ctx.name)
    valid = Enum.filter(valid, fn {_, _, _, _, series} -> series != [] end)
    registry = Native.metrics_new(Enum.map(Metrics.Instance.meta!(ctx.name), & &1.spec))

    check(
      :proper.forall({export_type(), hostile()}, fn {shape, other} ->
        exported = export(shape, valid)
        other = term(other)
        merged = Cluster.merge_answer(registry, :n@host, {:ok, {:ok, exported}})

        (merged == :ok or
           match?(
             {:error, {tag, m}} when tag in [:malformed, :incompatible] and is_binary(m),
             merged
           )) and
          match?({:error, _}, Cluster.merge_answer(registry, :n@host, other)) and
          Cluster.merge_answer(registry, other, {:ok, {:ok, exported}}) |> answer?()
      end),
      500
    )
  end

  describe "regressions (issue 14)" do
    test "improper lists raise ArgumentError, not :nif_panicked", ctx do
      for name <- [[:a | :b], [:hostile, :req | :count], Opaque.value([:x | "y"])] do
        assert_raise ArgumentError, ~r/no metric named/, fn ->
          Metrics.record(ctx.name, name, 1)
        end

        assert_raise ArgumentError, ~r/no metric named/, fn -> Metrics.handle(ctx.name, name) end
      end

      registry = Native.metrics_new(Enum.map(Metrics.Instance.meta!(ctx.name), & &1.spec))
      {:ok, [metric | _]} = Metrics.Cluster.export(ctx.name)

      for bad <- [[metric | :tail], [put_elem(metric, 4, [{["/a"], {:counter, 1}} | :t])]] do
        assert {:error, {:malformed, _}} = Native.metrics_import(registry, bad, "n")
        assert {:error, {:malformed, _}} = Cluster.merge_answer(registry, :n@h, {:ok, {:ok, bad}})
      end

      assert_raise ArgumentError, fn -> Native.metrics_new(Opaque.value([:a | :b])) end
    end

    test "options out of range raise ArgumentError in the caller, before any process starts" do
      for {opts, message} <- [
            {[name: :x, prune_every: 2 ** 64],
             ~r/prune_every must be nil or an integer in 1\.\.4294967295/},
            {[name: :x, prune_every: 2 ** 32], ~r/prune_every/},
            {[name: :x, max_series: 2 ** 64], ~r/max_series must be an integer in 1\.\.10000000/},
            {[name: :x, telemetry_module: FakeTelemetry],
             ~r/unknown options \[:telemetry_module\]/},
            {[name: :x, metrics: [:a | :b]], ~r/metrics must be a list .*\(a proper list\)/},
            {[name: :x, metrics: [%{Metrics.sum("a.b") | tags: :route}]],
             ~r/tags must be a list/},
            {[name: :x, metrics: [%{Metrics.sum("a.b") | tags: 1..3}]], ~r/tags must be a list/}
          ] do
        assert_raise ArgumentError, message, fn -> Metrics.start_link(Opaque.value(opts)) end
      end

      assert Process.whereis(:x) == nil
    end

    test "definitions: long name segments, non-list tags, bad descriptions" do
      long = String.duplicate("a", 256)

      for kind <- [:counter, :summary, :distribution] do
        assert_raise ArgumentError, ~r/at most 255 characters/, fn ->
          apply(Metrics, kind, ["x.#{long}", []])
        end
      end

      assert Metrics.counter("x.#{String.duplicate("é", 255)}").name |> length() == 2

      for tags <- [:route, "route", %{a: 1}, 1..3, [:a | :b], Enum.map(1..33, &:"t#{&1}")] do
        assert_raise ArgumentError, ~r/tags must be a list of at most 32 atoms/, fn ->
          Metrics.sum("a.b", tags: Opaque.value(tags))
        end
      end

      assert_raise ArgumentError, ~r/description must be/, fn ->
        Metrics.sum("a.b", description: Opaque.value(1))
      end

      assert_raise ArgumentError, ~r/names are like/, fn ->
        Metrics.sum(Opaque.value(<<"a.", 255>>))
      end
    end

    test "cluster_snapshot with a timeout beyond 2^32 - 1 raises ArgumentError", ctx do
      assert_raise ArgumentError,
                   ~r/timeout must be an integer in 1\.\.4294967295/,
                   fn ->
                     Metrics.cluster_snapshot(ctx.name, timeout: Opaque.value(2 ** 32))
                   end

      # A fresh instance: the properties above recorded sums that overflow (issue 14 item 1,
      # the histogram's, poisons reads).
      {:ok, pid} =
        Metrics.start_link(
          name: :hostile_timeout,
          metrics: [Metrics.counter("a.b")],
          telemetry: false
        )

      assert %{failed: []} = Metrics.cluster_snapshot(:hostile_timeout, timeout: 4_294_967_295)
      GenServer.stop(pid)
    end

    test "label values longer than 4096 bytes raise ArgumentError; the handler drops them", ctx do
      ok = String.duplicate("a", 4096)
      assert :ok = Metrics.record(ctx.name, "hostile.req.count", nil, %{route: ok})

      for route <- [ok <> "a", :binary.copy(<<255>>, 4097), 10 ** 4096, List.duplicate(ok, 2)] do
        assert_raise ArgumentError, ~r/longer than 4096 bytes/, fn ->
          Metrics.record(ctx.name, "hostile.req.count", nil, %{route: route})
        end

        assert_raise ArgumentError, ~r/longer than 4096 bytes/, fn ->
          Metrics.handle(ctx.name, "hostile.req.count", %{route: route})
        end
      end

      %{dropped: before} = find_metric(ctx.name, [:hostile, :req, :count])
      FakeTelemetry.execute([:hostile, :req], %{}, %{route: ok <> "a"})
      assert %{dropped: dropped} = find_metric(ctx.name, [:hostile, :req, :count])
      assert dropped == before + 1
    end
  end

  defp find_metric(name, metric_name) do
    Enum.find(Metrics.snapshot(name), &(&1.name == metric_name and &1.kind == :counter))
  end
end
