defmodule Hotpath.Hostile.ComputeTest do
  # Hostile terms (PropEr) fed to every public function of Hotpath.Compute, Hotpath.Password
  # and Hotpath.Digest: each answers a documented value, or raises ArgumentError or
  # Hotpath.NotRunningError or Hotpath.Compute.Error in the caller. Never an exit of the caller, never a crashed pool,
  # never a leaked slot.
  use ExUnit.Case, async: false

  import Hotpath.ComputeHelpers, only: [eventually: 1]
  alias Hotpath.{Compute, Digest, Password}

  # test_helper.exs puts PropEr on the code path (and insists on it in CI).
  @compile {:no_warn_undefined, [:proper, :proper_types]}
  no_proper = if Code.ensure_loaded?(:proper), do: false, else: "PropEr is not available"
  @moduletag skip: no_proper
  @moduletag timeout: 300_000

  @phc "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$3fUQ941rsmo3/Cpi+6K2zMNtfMLWcfukgfsepsnYCw4"

  setup_all do
    pool = :hostile_compute_pool
    {:ok, pid} = Compute.start_link(name: pool, max_concurrency: 1, max_queue: 4)
    Process.unlink(pid)

    {:ok, stopped} = Compute.start_link(name: :hostile_stopped_pool)
    GenServer.stop(stopped)

    dead = spawn(fn -> :ok end)
    ref = Process.monitor(dead)
    receive do: ({:DOWN, ^ref, _, _, _} -> :ok)
    other = spawn(fn -> receive do: (:never -> :ok) end)

    deep = Enum.reduce(1..100_000, "x", fn _, acc -> [acc] end)
    huge = :binary.copy(<<0xFF>>, 8 * 1024 * 1024)
    big_tuple = List.to_tuple(Enum.to_list(1..100_000))
    big_map = Map.new(1..10_000, &{&1, &1})

    on_exit(fn ->
      Process.exit(other, :kill)
      if Process.alive?(pid), do: GenServer.stop(pid)
    end)

    %{
      pool: pool,
      pool_pid: pid,
      terms: %{
        pool: pool,
        pool_pid: pid,
        dead: dead,
        other: other,
        deep: deep,
        huge: huge,
        big_tuple: big_tuple,
        big_map: big_map,
        job: Hotpath.Native.compute_job_new({:spin, 1, 100, nil})
      }
    }
  end

  # ---- generators ----------------------------------------------------------------------

  # Hostile terms are picked by index and resolved in the property: PropEr would read tuples
  # and lists given to its generators as types (and walk a 100k-deep list or tuple).
  defp picks(t) do
    List.to_tuple([
      0,
      -1,
      1,
      8,
      64,
      255,
      2 ** 32 - 1,
      2 ** 32,
      2 ** 64,
      -(2 ** 70),
      2 ** 200,
      0.0,
      -0.0,
      1.0,
      1.0e308,
      -1.0e308,
      nil,
      true,
      false,
      :x,
      :infinity,
      :sha256,
      :blake3,
      :argon2id,
      :hostile_stopped_pool,
      :hostile_no_such_pool,
      t.pool,
      "",
      "pw",
      "pool",
      <<0xFF, 0xFE, 0xFD>>,
      @phc,
      String.replace(@phc, "m=64,", "m=64,m=64,"),
      String.replace(@phc, "t=1", "t=4294967295"),
      String.replace(@phc, "m=64", "m=4294967295"),
      t.huge,
      t.deep,
      t.big_tuple,
      t.big_map,
      t.dead,
      t.other,
      t.pool_pid,
      t.job,
      self(),
      make_ref(),
      fn -> :fun0 end,
      fn _ -> :fun1 end,
      [1 | :improper],
      ["a" | "b"],
      [[[["abc" | "d"], 255], 0]],
      [256],
      [-1],
      {:global, :hostile_no_such_pool},
      {:via, :hostile_no_such_module, :x},
      {:via, :global, :hostile_no_such_pool},
      {:hostile_compute_pool, node()},
      {:a, :b, :c},
      %{},
      %{a: 1},
      {}
    ])
  end

  defp scalar(t) do
    :proper_types.oneof([
      :proper_types.tuple([:pick, :proper_types.integer(0, tuple_size(picks(t)) - 1)]),
      :proper_types.binary(),
      :proper_types.integer(),
      :proper_types.float()
    ])
  end

  @keys [
    :m_cost,
    :t_cost,
    :parallelism,
    :hash_len,
    :salt_len,
    :compute,
    :timeout,
    :max_m_cost,
    :max_t_cost,
    :max_parallelism,
    :variant,
    :version,
    :secret,
    :associated_data,
    :progress,
    :dirty_threshold,
    :step_us,
    :notify,
    :panic_at,
    :bogus
  ]

  # Options: a hostile term, or a keyword list of hostile values (first occurrence wins, so
  # the small costs appended after keep valid-looking hashes cheap).
  defp options(t) do
    option = :proper_types.tuple([:proper_types.elements(@keys), scalar(t)])

    :proper_types.frequency([
      {1, scalar(t)},
      {3, :proper_types.exactly([])},
      {3, :proper_types.fixed_list([option])},
      {2, :proper_types.list(option)}
    ])
  end

  @calls [
    :run,
    :run_spin,
    :compute_info,
    :spin_direct,
    :job_info,
    :cancel,
    :hash,
    :hash_pwd_salt,
    :verify,
    :verify_pass,
    :no_user_verify,
    :needs_rehash?,
    :info,
    :raw_hash,
    :blake3,
    :sha256,
    :digest_hash
  ]

  defp case_gen(t) do
    :proper_types.tuple([
      :proper_types.elements(@calls),
      scalar(t),
      scalar(t),
      options(t)
    ])
  end

  # ---- calls and their documented answers ---------------------------------------------

  @cheap [m_cost: 64, t_cost: 1, parallelism: 1, timeout: 2_000]
  @cheap_verify [max_m_cost: 1024, max_t_cost: 2, timeout: 2_000]

  defp opts(o) when is_list(o), do: o ++ @cheap
  defp opts(o), do: o

  defp vopts(o) when is_list(o), do: o ++ @cheap_verify
  defp vopts(o), do: o

  defp call(:run, a, b, o, _t), do: {&result?/1, fn -> Compute.run(a, b, opts(o)) end}

  defp call(:run_spin, a, b, o, t) do
    # spin's step count is the caller's; a short timeout cancels it (never unbounded).
    {&result?/1,
     fn ->
       Compute.run(t.pool, fn -> Compute.spin(a, o) end, timeout: 30)
       |> tap(fn _ -> b end)
     end}
  end

  defp call(:compute_info, a, _b, _o, _t), do: {&is_map/1, fn -> Compute.info(a) end}

  defp call(:spin_direct, a, _b, o, _t) do
    # Outside a pool only steps the caller bounds: 0..3.
    steps = if is_integer(a) and a > 3, do: rem(a, 4), else: a
    {&result?/1, fn -> Compute.spin(steps, opts_spin(o)) end}
  end

  defp call(:job_info, a, _b, _o, _t), do: {&is_map/1, fn -> Compute.job_info(a) end}
  defp call(:cancel, a, _b, _o, _t), do: {&is_boolean/1, fn -> Compute.cancel(a) end}

  defp call(:hash, a, _b, o, _t),
    do: {&ok_binary_or_error?/1, fn -> Password.hash(a, opts(o)) end}

  defp call(:hash_pwd_salt, a, _b, o, _t),
    do: {&is_binary/1, fn -> Password.hash_pwd_salt(a, opts(o)) end}

  defp call(:verify, a, b, o, _t),
    do: {&ok_bool_or_error?/1, fn -> Password.verify(a, b, vopts(o)) end}

  defp call(:verify_pass, a, b, o, _t),
    do: {&is_boolean/1, fn -> Password.verify_pass(a, b, vopts(o)) end}

  defp call(:no_user_verify, _a, _b, o, _t),
    do: {&(&1 == false), fn -> Password.no_user_verify(opts(o)) end}

  defp call(:needs_rehash?, a, _b, o, _t),
    do: {&is_boolean/1, fn -> Password.needs_rehash?(a, opts(o)) end}

  defp call(:info, a, _b, _o, _t), do: {&ok_map_or_error?/1, fn -> Password.info(a) end}

  defp call(:raw_hash, a, b, o, _t),
    do: {&is_binary/1, fn -> Password.raw_hash(a, b, ropts(o)) end}

  defp call(:blake3, a, _b, o, _t), do: {&digest?/1, fn -> Digest.blake3(a, o) end}
  defp call(:sha256, a, _b, o, _t), do: {&digest?/1, fn -> Digest.sha256(a, o) end}
  defp call(:digest_hash, a, b, o, _t), do: {&digest?/1, fn -> Digest.hash(a, b, o) end}

  defp ropts(o) when is_list(o), do: o ++ [m_cost: 64, t_cost: 1, parallelism: 1]
  defp ropts(o), do: o

  # spin's :step_us is the caller's too: keep the steps short outside a pool.
  defp opts_spin(o) when is_list(o), do: o ++ [step_us: 100]
  defp opts_spin(o), do: o

  defp result?({:ok, _}), do: true
  defp result?({:error, _}), do: true
  defp result?(_), do: false

  defp ok_binary_or_error?({:ok, b}), do: is_binary(b)
  defp ok_binary_or_error?({:error, _}), do: true
  defp ok_binary_or_error?(_), do: false

  defp ok_bool_or_error?({:ok, b}), do: is_boolean(b)
  defp ok_bool_or_error?({:error, _}), do: true
  defp ok_bool_or_error?(_), do: false

  defp ok_map_or_error?({:ok, m}), do: is_map(m)
  defp ok_map_or_error?({:error, _}), do: true
  defp ok_map_or_error?(_), do: false

  defp digest?(d), do: is_binary(d) and byte_size(d) == 32

  defp resolve({:pick, i}, picks), do: elem(picks, i)
  defp resolve(list, picks) when is_list(list), do: Enum.map(list, &resolve(&1, picks))
  defp resolve({key, value}, picks) when is_atom(key), do: {key, resolve(value, picks)}
  defp resolve(other, _picks), do: other

  # :ok, or why the answer is not a documented one.
  defp check({name, a, b, o}, t) do
    picks = picks(t)
    [a, b, o] = Enum.map([a, b, o], &resolve(&1, picks))
    {valid?, fun} = call(name, a, b, o, t)

    try do
      value = fun.()
      Process.put(:last_kind, :value)
      if valid?.(value), do: :ok, else: {:bad_value, name, value}
    rescue
      e in [ArgumentError, Hotpath.NotRunningError, Hotpath.Compute.Error] ->
        Process.put(:last_kind, e.__struct__)
        if Exception.message(e) != "", do: :ok, else: {:no_message, e}

      e ->
        {:raised, name, e}
    catch
      kind, reason -> {:caught, name, kind, reason}
    end
  end

  defp pool_intact?(t) do
    Process.whereis(t.pool) == t.pool_pid and
      eventually(fn -> match?(%{running: 0, queued: 0}, Compute.info(t.pool)) end)
  end

  test "every public function answers hostile terms as documented", %{terms: t} do
    property =
      :proper.forall(case_gen(t), fn kase ->
        result = check(kase, t)
        count(result)
        # Drop messages a hostile :progress / :notify pointed at us.
        flush()

        case result do
          :ok ->
            pool_intact?(t)

          failure ->
            IO.puts(
              :stderr,
              "hostile case failed: #{inspect(failure, limit: 12, printable_limit: 200)}"
            )

            false
        end
      end)

    result = :proper.quickcheck(property, [{:numtests, 1500}, :quiet, :noshrink, {:max_size, 8}])

    tally = for {{:tally, k}, n} <- Process.get(), into: %{}, do: {k, n}
    IO.puts("hostile answers: #{inspect(tally)}")
    assert Map.get(tally, :value, 0) > 100

    assert result == true,
           "counterexample: #{inspect(:proper.counterexample(), limit: 12, printable_limit: 200)}"

    assert pool_intact?(t)
  end

  test "known hostile cases, each with its documented answer", %{terms: t} do
    assert Compute.run(:hostile_stopped_pool, fn -> 1 end) == {:error, :not_running}
    assert_raise Hotpath.NotRunningError, fn -> Compute.info(:hostile_stopped_pool) end
    assert_raise ArgumentError, fn -> Compute.info(t.other) end
    assert_raise ArgumentError, fn -> Compute.run(t.other, fn -> 1 end) end

    assert_raise ArgumentError, fn ->
      Compute.run({:via, :hostile_no_such_module, :x}, fn -> 1 end)
    end

    assert {:error, :not_running} = Password.hash("pw", [compute: t.dead] ++ @cheap)
    assert_raise ArgumentError, fn -> Password.hash("pw", compute: t.big_tuple) end
    assert_raise ArgumentError, fn -> Password.hash(t.deep) end
    assert_raise ArgumentError, fn -> Digest.sha256(Hotpath.Opaque.value([1 | :improper])) end
    assert byte_size(Digest.sha256(t.deep)) == 32
    assert byte_size(Digest.blake3(t.huge)) == 32

    assert {:error, {:incompatible, _}} =
             Password.verify("pw", String.replace(@phc, "t=1", "t=4294967295"))

    assert {:error, {:malformed, _}} = Password.verify("pw", t.huge)
    assert pool_intact?(t)
  end

  # Tallies the kinds of answers (printed at the end: the property must reach real work).
  defp count(result) do
    key = if result == :ok, do: Process.get(:last_kind, :value), else: :failure
    Process.put({:tally, key}, Process.get({:tally, key}, 0) + 1)
  end

  defp flush do
    receive do
      _ -> flush()
    after
      0 -> :ok
    end
  end
end
