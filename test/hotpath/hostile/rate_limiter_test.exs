defmodule Hotpath.Hostile.RateLimiterTest do
  # Issue 14: generated hostile terms (bignums, ±0.0, huge floats, huge and deep lists and
  # tuples, maps, pids, refs, funs, improper lists, unknown and stopped limiter names) as
  # keys, costs, options and names to every public Hotpath.RateLimiter function. Each call
  # answers a documented value or raises ArgumentError (Hotpath.NotRunningError for a name
  # that runs no limiter): never an exit, never another exception, and the owner never
  # crashes (its pid is the same after the run).
  use ExUnit.Case, async: false

  alias Hotpath.RateLimiter

  @compile {:no_warn_undefined, [:proper, :proper_types]}
  no_proper = if Code.ensure_loaded?(:proper), do: false, else: "PropEr is not available"
  @moduletag skip: no_proper
  @moduletag timeout: 180_000

  @limiter :hostile_limiter
  @stopped :hostile_stopped

  setup_all do
    {:ok, sup} =
      Supervisor.start_link(
        [{RateLimiter, name: @limiter, limit: 3, period: 1_000, max_keys: 4_096}],
        strategy: :one_for_one
      )

    # A limiter that ran and was stopped: its name is unknown again.
    {:ok, stopped} = RateLimiter.start_link(name: @stopped, limit: 1, period: 1_000)
    GenServer.stop(stopped)
    on_exit(fn -> Process.exit(sup, :shutdown) end)
    :ok
  end

  # ---- generators -----------------------------------------------------------------------

  # Built once per run (in the process that runs the property), picked by `term/0`.
  defp bigs do
    case Process.get(:hostile_bigs) do
      nil ->
        bigs = [
          Enum.to_list(1..100_000),
          Enum.reduce(1..50_000, [], &[&1, &2]),
          Enum.reduce(1..20_000, :leaf, &{&1, &2}),
          List.to_tuple(Enum.to_list(1..100_000)),
          Map.new(1..20_000, &{&1, &1}),
          Enum.reduce(1..1_000, [], &[&2 | &1])
        ]

        Process.put(:hostile_bigs, bigs)
        bigs

      bigs ->
        bigs
    end
  end

  defp scalar do
    :proper_types.oneof([
      :proper_types.integer(),
      :proper_types.elements([
        0,
        -1,
        1,
        Bitwise.bsl(1, 40),
        Bitwise.bsl(1, 40) + 1,
        Bitwise.bsl(1, 64),
        -Bitwise.bsl(1, 64),
        Bitwise.bsl(1, 1_000),
        4_294_967_295,
        4_294_967_296,
        0.0,
        -0.0,
        1.0e308,
        -1.0e308,
        5.0e-324,
        :infinity,
        nil,
        true,
        :now,
        "",
        <<1::1>>,
        <<255, 254>>,
        :binary.copy("k", 4_096),
        :binary.copy("k", 4_097),
        self(),
        make_ref(),
        fn -> :ok end,
        &Enum.map/2,
        @limiter,
        @stopped,
        :no_such_limiter
      ]),
      :proper_types.float(),
      :proper_types.atom(),
      :proper_types.binary()
    ])
  end

  defp term do
    :proper_types.frequency([
      {6, scalar()},
      {2, :proper_types.list(scalar())},
      {2, :proper_types.tuple([scalar(), scalar()])},
      {1, small_map()},
      {1, :proper_types.exactly([:a | :b])},
      {1, :proper_types.exactly([1, 2 | 3])},
      {3, :proper_types.oneof(Enum.map(bigs(), &:proper_types.exactly/1))}
    ])
  end

  defp small_map do
    :proper_types.bind(
      :proper_types.list(:proper_types.tuple([scalar(), scalar()])),
      &Map.new/1,
      false
    )
  end

  defp opt_value do
    :proper_types.oneof([scalar(), :proper_types.integer(0, 10_000)])
  end

  defp opts do
    :proper_types.frequency([
      {3, :proper_types.list(:proper_types.tuple([opt_key(), opt_value()]))},
      {1, term()}
    ])
  end

  defp opt_key do
    :proper_types.elements([
      :now,
      :limit,
      :period,
      :burst,
      :name,
      :algorithm,
      :max_keys,
      :max_bytes,
      :on_full,
      :sweep_every,
      :telemetry_denies,
      :cluster,
      :cluster_timeout,
      :cluster_fallback,
      :other
    ])
  end

  defp name do
    :proper_types.frequency([
      {4, :proper_types.exactly(@limiter)},
      {1, :proper_types.exactly(@stopped)},
      {2, term()}
    ])
  end

  defp call do
    :proper_types.oneof([
      :proper_types.tuple([:proper_types.exactly(:hit2), name(), term()]),
      :proper_types.tuple([:proper_types.exactly(:hit3), name(), term(), term()]),
      :proper_types.tuple([:proper_types.exactly(:hit4), name(), term(), term(), opts()]),
      :proper_types.tuple([:proper_types.exactly(:peek), name(), term(), term(), opts()]),
      :proper_types.tuple([:proper_types.exactly(:reset), name(), term()]),
      :proper_types.tuple([:proper_types.exactly(:reset_all), name()]),
      :proper_types.tuple([:proper_types.exactly(:info), name()]),
      :proper_types.tuple([:proper_types.exactly(:now), name()]),
      :proper_types.tuple([:proper_types.exactly(:node_for), name(), term()]),
      :proper_types.tuple([:proper_types.exactly(:sweep), name(), opts()]),
      :proper_types.tuple([:proper_types.exactly(:start_link), opts()]),
      :proper_types.tuple([:proper_types.exactly(:child_spec), opts()])
    ])
  end

  # ---- the calls and their documented answers ---------------------------------------------

  defp run({:hit2, l, key}), do: RateLimiter.hit(l, key)
  defp run({:hit3, l, key, cost}), do: RateLimiter.hit(l, key, cost)
  defp run({:hit4, l, key, cost, opts}), do: RateLimiter.hit(l, key, cost, opts)
  defp run({:peek, l, key, cost, opts}), do: RateLimiter.peek(l, key, cost, opts)
  defp run({:reset, l, key}), do: RateLimiter.reset(l, key)
  defp run({:reset_all, l}), do: RateLimiter.reset_all(l)
  defp run({:info, l}), do: RateLimiter.info(l)
  defp run({:now, l}), do: RateLimiter.now(l)
  defp run({:node_for, l, key}), do: RateLimiter.node_for(l, key)
  defp run({:sweep, l, opts}), do: RateLimiter.sweep(l, opts)

  defp run({:start_link, opts}) do
    # Never under a name that is in use by the limiters of this test.
    opts =
      if is_list(opts) and Keyword.keyword?(opts),
        do: [{:name, :hostile_started} | Keyword.delete(opts, :name)],
        else: opts

    case RateLimiter.start_link(opts) do
      {:ok, pid} ->
        stop(pid)
        {:started, pid}

      other ->
        other
    end
  end

  defp run({:child_spec, opts}), do: RateLimiter.child_spec(opts)

  defp stop(pid) do
    Process.unlink(pid)
    ref = Process.monitor(pid)
    Process.exit(pid, :shutdown)

    receive do
      {:DOWN, ^ref, _, _, _} -> :ok
    end
  end

  defp documented?({:allow, r, t}), do: is_integer(r) and r >= 0 and is_integer(t) and t >= 0

  defp documented?({:deny, w, t}),
    do: (w == :infinity or (is_integer(w) and w > 0)) and is_integer(t) and t >= 0

  defp documented?(:ok), do: true
  defp documented?(%{keys: _, memory_bytes: _, key_bytes: _, config: _}), do: true
  defp documented?(%{removed: _, keys: _, duration: _}), do: true
  defp documented?(%{id: {RateLimiter, _}, start: _}), do: true
  defp documented?({:started, pid}), do: is_pid(pid)
  defp documented?({:error, _}), do: true
  defp documented?(n) when is_integer(n) and n >= 0, do: true
  defp documented?(node) when is_atom(node), do: node == node()
  defp documented?(_), do: false

  defp answer(call) do
    {:ok, run(call)}
  rescue
    e in [ArgumentError, Hotpath.NotRunningError] -> {:raised, e}
    e -> {:unexpected, e, __STACKTRACE__}
  catch
    kind, reason -> {:unexpected, {kind, reason}, __STACKTRACE__}
  end

  defp failed(message) do
    Process.put(:hostile_failures, [message | Process.get(:hostile_failures, [])])
    false
  end

  test "every public function answers hostile terms with a documented value or ArgumentError" do
    owner = Process.whereis(@limiter)
    Process.flag(:trap_exit, true)

    property =
      :proper.forall(call(), fn call ->
        case answer(call) do
          {:ok, value} ->
            documented?(value) or
              failed("#{inspect(call, limit: 6)} answered #{inspect(value, limit: 6)}")

          {:raised, _} ->
            true

          {:unexpected, e, stack} ->
            failed(
              "#{inspect(call, limit: 6)} raised or exited:\n" <>
                Exception.format(:error, e, stack)
            )
        end
      end)

    result = :proper.quickcheck(property, [{:numtests, 600}, :quiet, :noshrink, {:max_size, 10}])
    failures = Process.get(:hostile_failures, [])
    assert result == true and failures == [], Enum.join(Enum.take(failures, 3), "\n\n")

    # The owner never crashed, nothing exited this process, and the limiter still works.
    assert Process.whereis(@limiter) == owner
    assert Process.alive?(owner)
    refute_received {:EXIT, _, _}
    assert {:allow, _, _} = RateLimiter.hit(@limiter, {:after, make_ref()})
    assert RateLimiter.published_entry(@stopped) == nil
  end
end
