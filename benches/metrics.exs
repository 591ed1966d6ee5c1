# Hotpath.Histogram and Hotpath.Metrics against the empty NIF call, a hand-written
# :counters/ETS log-bucket histogram, folsom's histogram and (when installed) :telemetry.
#
#     MIX_ENV=prod mix run benches/metrics.exs
Code.require_file("support/harness.exs", __DIR__)

defmodule Bench.Metrics do
  @compile {:no_warn_undefined, :telemetry}
  @compile {:no_warn_undefined, :folsom_metrics}

  alias Hotpath.{Histogram, Metrics}

  # What a user writes by hand: 8 buckets per power of two in a :counters array found in
  # ETS, plus the count and an integer sum.
  defmodule HandRolled do
    @buckets 8 * 80

    def new do
      table = :ets.new(:bench_hand_rolled, [:set, :public, read_concurrency: true])
      :ets.insert(table, {:hist, :counters.new(@buckets + 2, [:write_concurrency])})
      table
    end

    def record(table, value) do
      [{_, ref}] = :ets.lookup(table, :hist)
      index = value |> max(1.0e-9) |> :math.log2() |> Kernel.*(8) |> floor() |> Kernel.+(240)
      :counters.add(ref, min(max(index, 1), @buckets), 1)
      :counters.add(ref, @buckets + 1, 1)
      :counters.add(ref, @buckets + 2, round(value))
    end
  end

  def run do
    h = Histogram.new()
    hand = HandRolled.new()
    folsom? = start_folsom()

    {:ok, _} =
      Metrics.start_link(
        name: Bench.Metrics.Registry,
        telemetry: false,
        metrics: [
          Metrics.distribution("bench.request.stop.duration", tags: [:route, :method])
        ]
      )

    tags = %{route: "/users/:id", method: "GET"}
    handle = Metrics.handle(Bench.Metrics.Registry, "bench.request.stop.duration", tags)
    values = List.to_tuple(for i <- 1..1024, do: 0.5 + rem(i * 7919, 1000) / 10)

    telemetry? =
      Code.ensure_loaded?(:telemetry) and
        match?({:ok, _}, Application.ensure_all_started(:telemetry))

    if telemetry? do
      :telemetry.attach("bench-noop", [:bench, :noop], &__MODULE__.noop_handler/4, nil)

      # The same definitions attached by Hotpath.Metrics: one handler per event.
      {:ok, _} =
        Metrics.start_link(
          name: Bench.Metrics.Attached,
          metrics: [
            Metrics.distribution("bench.attached.stop.duration", tags: [:route, :method]),
            Metrics.summary("bench.attached_summary.stop.duration", tags: [:route, :method])
          ]
        )
    end

    cases =
      [
        {"empty NIF", fn -> Hotpath.Native.noop() end},
        {"picking the value only", fn i -> elem(values, Bitwise.band(i, 1023)) end},
        {"empty NIF with Histogram.record/2's arguments",
         fn i ->
           Hotpath.Native.noop_histogram_record_shape(h, elem(values, Bitwise.band(i, 1023)))
         end},
        {"empty NIF with Metrics.record/4's arguments",
         fn i ->
           Hotpath.Native.noop_metrics_record_shape(
             Bench.Metrics.Registry,
             "bench.request.stop.duration",
             elem(values, Bitwise.band(i, 1023)),
             tags
           )
         end},
        {"Histogram.record/2",
         fn i -> Histogram.record(h, elem(values, Bitwise.band(i, 1023))) end},
        {"Metrics.record/4 (2 tags)",
         fn i ->
           Metrics.record(
             Bench.Metrics.Registry,
             "bench.request.stop.duration",
             elem(values, Bitwise.band(i, 1023)),
             tags
           )
         end},
        {"Metrics.record_handle/2 (pre-resolved)",
         fn i -> Metrics.record_handle(handle, elem(values, Bitwise.band(i, 1023))) end},
        {":counters/ETS log buckets",
         fn i -> HandRolled.record(hand, elem(values, Bitwise.band(i, 1023))) end}
      ] ++
        if(folsom?,
          do: [
            {"folsom histogram",
             fn i ->
               :folsom_metrics.notify(:bench_folsom, elem(values, Bitwise.band(i, 1023)))
             end}
          ],
          else: []
        ) ++
        if(telemetry?,
          do: [
            {":telemetry.execute/3 no-op",
             fn -> :telemetry.execute([:bench, :noop], %{}, %{}) end},
            {":telemetry.execute/3 into Metrics, distribution",
             fn i ->
               :telemetry.execute(
                 [:bench, :attached, :stop],
                 %{duration: elem(values, Bitwise.band(i, 1023))},
                 tags
               )
             end},
            {":telemetry.execute/3 into Metrics, summary",
             fn i ->
               :telemetry.execute(
                 [:bench, :attached_summary, :stop],
                 %{duration: elem(values, Bitwise.band(i, 1023))},
                 tags
               )
             end}
          ],
          else: []
        )

    render = render_10k()

    result =
      Hotpath.Bench.run(
        title: "Metrics: record path",
        note:
          "Values cycle through 1024 floats in 0.5..100.5 (\"picking the value only\" is that " <>
            "cost alone). Metrics.record/4 is one NIF call (instance and name lookup, 2 binary " <>
            "tags read from the map, series lookup, histogram record with 11 classic buckets). " <>
            "The two \"empty NIF with ...'s arguments\" cases are floors: NIFs registered like " <>
            "the real ones that read the same arguments the same way (the histogram resource " <>
            "and the float; the instance atom, the name binary, the float and the two binary " <>
            "tag values from the map) and answer :ok, touching no histogram or registry. " <>
            "Baselines: the empty NIF; a hand-written :counters/ETS log-bucket " <>
            "histogram; folsom 0.8.2 (Debian erlang-folsom, uniform reservoir)" <>
            if(folsom?, do: "", else: " - not found, skipped") <>
            "; `:telemetry.execute/3` to a no-op handler, and the same call into a " <>
            "Hotpath.Metrics instance attached to the event (a distribution, and a summary " <>
            "with its default 60 s window; 2 tags each)" <>
            if(telemetry?,
              do: ".",
              else:
                " - :telemetry is not installed here, skipped (ERL_LIBS with a built " <>
                  ":telemetry adds these rows)."
            ) <>
            "\n\n" <> render.text,
        cases: cases,
        baselines: ["empty NIF", "Histogram.record/2"],
        targets: targets(folsom?, telemetry?, render)
      )

    result
  end

  defp targets(folsom?, telemetry?, render) do
    base = [
      {:ratio, "Histogram.record/2", "empty NIF", :<=, 1.5, :single},
      {:ratio, "Metrics.record/4 (2 tags)", "empty NIF", :<=, 4.0, :single},
      {:scaling, "Histogram.record/2", :>=, 1.6},
      {:custom, "Histogram.record/2 against its argument floor (reported)",
       &over_floor(&1, "Histogram.record/2", "empty NIF with Histogram.record/2's arguments")},
      {:custom, "Metrics.record/4 against its argument floor (reported)",
       &over_floor(&1, "Metrics.record/4 (2 tags)", "empty NIF with Metrics.record/4's arguments")}
    ]

    folsom =
      if folsom? do
        [
          {:custom, "Histogram.record/2 at least 10x faster than folsom's histogram (1 process)",
           &faster_than_folsom/1}
        ]
      else
        []
      end

    telemetry =
      if telemetry? do
        for kind <- ["distribution", "summary"] do
          {:custom,
           ":telemetry.execute/3 into Metrics, #{kind}, against the no-op handler " <>
             "(reported)", &telemetry_ratio(&1, ":telemetry.execute/3 into Metrics, #{kind}")}
        end
      else
        []
      end

    base ++
      folsom ++
      telemetry ++
      [
        {:custom,
         "render 10k series as Prometheus text, OpenMetrics text and protobuf (reported)",
         fn _ -> {true, render.summary} end}
      ]
  end

  # Informational: what reading the arguments alone costs, and how far the real call is above it.
  defp over_floor(results, case_name, floor_name) do
    single = results[:single]
    floor = single[floor_name].ns
    empty = single["empty NIF"].ns

    {true,
     "floor #{Hotpath.Bench.format_ratio(floor / empty)} the empty NIF; the call is " <>
       "#{Hotpath.Bench.format_ratio(single[case_name].ns / floor)} its floor " <>
       "(+#{:erlang.float_to_binary(single[case_name].ns - floor, decimals: 1)} ns)"}
  end

  defp telemetry_ratio(results, case_name) do
    ratios =
      for {mode, r} <- Enum.sort(results) do
        "#{mode} " <>
          Hotpath.Bench.format_ratio(r[case_name].ns / r[":telemetry.execute/3 no-op"].ns)
      end

    {true, Enum.join(ratios, ", ")}
  end

  defp faster_than_folsom(results) do
    single = results[:single]
    ratio = single["folsom histogram"].ns / single["Histogram.record/2"].ns
    {ratio >= 10, Hotpath.Bench.format_ratio(ratio) <> " faster"}
  end

  def noop_handler(_event, _measurements, _metadata, _config), do: :ok

  defp start_folsom do
    with true <- Code.ensure_loaded?(:folsom_metrics),
         {:ok, _} <- Application.ensure_all_started(:folsom) do
      :folsom_metrics.new_histogram(:bench_folsom)
      true
    else
      _ -> false
    end
  end

  # 10 000 series of a distribution (11 buckets each) and a summary, rendered 5 times.
  defp render_10k do
    {:ok, _} =
      Metrics.start_link(
        name: Bench.Metrics.Render,
        telemetry: false,
        max_series: 10_000,
        metrics: [Metrics.distribution("bench.render.duration", tags: [:id])]
      )

    for i <- 1..10_000, v <- [1, 20, 300] do
      Metrics.record(Bench.Metrics.Render, "bench.render.duration", v / 10, %{id: i})
    end

    memory = Metrics.info(Bench.Metrics.Render).memory_bytes

    # The three formats alternated, 5 renders each: {median µs, bytes} per format.
    formats = [:prometheus, :openmetrics, :protobuf]

    times =
      for _ <- 1..5, format <- formats, reduce: %{} do
        acc ->
          {us, text} =
            :timer.tc(fn -> Metrics.prometheus(Bench.Metrics.Render, format: format) end)

          sample = {us, IO.iodata_length(text)}
          Map.update(acc, format, [sample], &[sample | &1])
      end

    [{us, bytes}, {om_us, om_bytes}, {pb_us, pb_bytes}] =
      for format <- formats, do: times[format] |> Enum.sort() |> Enum.at(2)

    ms = fn us -> Float.round(us / 1000, 1) end

    %{
      summary:
        "#{ms.(us)} ms for 10k series (#{div(bytes, 1024)} KiB), " <>
          "OpenMetrics #{ms.(om_us)} ms (#{div(om_bytes, 1024)} KiB), " <>
          "protobuf #{ms.(pb_us)} ms (#{div(pb_bytes, 1024)} KiB), " <>
          "#{div(memory, 10_000)} B native memory per series",
      text:
        "Rendering 10 000 distribution series (11 buckets, 3 values each) on a dirty scheduler, " <>
          "median of 5 renders per format, alternated: Prometheus text #{ms.(us)} ms " <>
          "(#{div(bytes, 1024)} KiB), OpenMetrics text #{ms.(om_us)} ms " <>
          "(#{div(om_bytes, 1024)} KiB, with _created), protobuf with native histograms " <>
          "#{ms.(pb_us)} ms (#{div(pb_bytes, 1024)} KiB); native memory #{div(memory, 10_000)} B per series."
    }
  end
end

Hotpath.Bench.main(&Bench.Metrics.run/0)
