defmodule Hotpath.RateLimiterPropertyTest do
  # PropEr (Debian's erlang-proper): random command sequences through the public API, checked
  # answer by answer against models written here in Elixir.
  use ExUnit.Case, async: true

  alias Hotpath.RateLimiter

  # test_helper.exs puts PropEr on the code path (and insists on it in CI).
  @compile {:no_warn_undefined, [:proper, :proper_types]}
  no_proper = if Code.ensure_loaded?(:proper), do: false, else: "PropEr is not available"
  @moduletag skip: no_proper

  @ns_per_ms 1_000_000

  defp command do
    :proper_types.tuple([
      :proper_types.frequency([{6, :hit}, {2, :peek}, {1, :reset}]),
      :proper_types.integer(0, 2),
      :proper_types.integer(1, 5),
      :proper_types.frequency([
        {3, 0},
        {5, :proper_types.integer(0, 300)},
        {1, :proper_types.integer(0, 3_000)}
      ])
    ])
  end

  defp scenario(algorithms) do
    :proper_types.tuple([
      :proper_types.elements(algorithms),
      :proper_types.integer(1, 6),
      :proper_types.integer(1, 2_000),
      :proper_types.list(command())
    ])
  end

  defp check(algorithms) do
    property =
      :proper.forall(scenario(algorithms), fn {algorithm, limit, period, commands} ->
        run(algorithm, limit, period, commands)
      end)

    result = :proper.quickcheck(property, [{:numtests, 250}, :quiet])

    assert result == true,
           "counterexample: #{inspect(:proper.counterexample(), limit: :infinity)}"
  end

  test "fixed window matches a window model" do
    check([:fixed_window])
  end

  test "gcra and token bucket match a leaky-bucket model" do
    check([:gcra, :token_bucket])
  end

  defp run(algorithm, limit, period, commands) do
    name = :"prop_#{System.unique_integer([:positive])}"

    {:ok, pid} =
      RateLimiter.start_link(
        name: name,
        algorithm: algorithm,
        limit: limit,
        period: period,
        sweep_every: :infinity
      )

    {ok, _, _} =
      Enum.reduce_while(commands, {true, %{}, 0}, fn {op, key, cost, advance},
                                                     {true, model, now} ->
        now = now + advance

        {got, model} =
          case op do
            :reset -> {RateLimiter.reset(name, key), Map.delete(model, key)}
            :hit -> {RateLimiter.hit(name, key, cost, now: now), model}
            :peek -> {RateLimiter.peek(name, key, cost, now: now), model}
          end

        {want, model} =
          case op do
            :reset -> {:ok, model}
            _ -> model_decide(algorithm, limit, period, model, key, cost, now, op == :hit)
          end

        if got == want,
          do: {:cont, {true, model, now}},
          else: {:halt, {false, model, now}}
      end)

    GenServer.stop(pid)
    ok
  end

  defp model_decide(:fixed_window, limit, period, model, key, cost, now, commit) do
    {start, count} =
      case model do
        %{^key => {start, count}} when now < start + period -> {start, count}
        _ -> {now, 0}
      end

    finish = start + period

    cond do
      cost > limit ->
        {{:deny, :infinity, if(count > 0, do: finish - now, else: 0)}, model}

      count + cost > limit ->
        {{:deny, finish - now, finish - now}, model}

      true ->
        model = if commit, do: Map.put(model, key, {start, count + cost}), else: model
        {{:allow, limit - count - cost, finish - now}, model}
    end
  end

  defp model_decide(_bucket, limit, period, model, key, cost, now_ms, commit) do
    now = now_ms * @ns_per_ms
    interval = div(period * @ns_per_ms + limit - 1, limit)
    capacity = limit * interval
    {level, last} = Map.get(model, key, {0, now})
    level = max(level - (now - last), 0)
    needed = level + cost * interval

    cond do
      cost > limit ->
        {{:deny, :infinity, ceil_ms(level)}, model}

      needed > capacity ->
        {{:deny, ceil_ms(needed - capacity), ceil_ms(level)}, model}

      true ->
        model = if commit, do: Map.put(model, key, {needed, now}), else: model
        {{:allow, div(capacity - needed, interval), ceil_ms(needed)}, model}
    end
  end

  defp ceil_ms(ns), do: div(ns + @ns_per_ms - 1, @ns_per_ms)
end
