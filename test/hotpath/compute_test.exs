defmodule Hotpath.ComputeTest do
  # Not async: observes the VM-wide native load gauge and saturates the dirty schedulers.
  use ExUnit.Case, async: false

  import Hotpath.ComputeHelpers
  alias Hotpath.Compute

  doctest Hotpath.Compute

  defp start_pool(opts \\ []) do
    name = :"compute_test_#{System.unique_integer([:positive])}"
    handlers = forward_compute_events(name)
    on_exit(fn -> Enum.each(handlers, &Hotpath.FakeTelemetry.detach/1) end)
    start_supervised!({Compute, Keyword.put(opts, :name, name)}, id: name)

    name
  end

  # A job that reports its pid and waits to be released.
  defp blocker(test) do
    fn ->
      send(test, {:blocked, self()})

      receive do
        :release -> :released
      end
    end
  end

  describe "start_link/1 options" do
    test "bad options raise ArgumentError naming the problem" do
      assert_raise ArgumentError, ~r/missing required option :name/, fn ->
        Compute.start_link([])
      end

      assert_raise ArgumentError, ~r/:name must be/, fn -> Compute.start_link(name: "x") end
      assert_raise ArgumentError, ~r/:name must be/, fn -> Compute.child_spec(name: "x") end

      assert_raise ArgumentError, ~r/:max_queue must be/, fn ->
        Compute.child_spec(name: :x, max_queue: -1)
      end

      assert %{id: {Compute, :x}} = Compute.child_spec(name: :x)

      assert_raise ArgumentError, ~r/:max_concurrency must be a positive integer/, fn ->
        Compute.start_link(name: :x, max_concurrency: 0)
      end

      assert_raise ArgumentError, ~r/:max_queue must be a non-negative integer/, fn ->
        Compute.start_link(name: :x, max_queue: -1)
      end

      assert_raise ArgumentError, ~r/unknown options \[:max\].*valid options/, fn ->
        Compute.start_link(name: :x, max: 1)
      end

      assert_raise ArgumentError, ~r/keyword list/, fn -> Compute.start_link(:x) end
    end

    test "defaults: max_concurrency leaves one dirty scheduler free, queue of 100" do
      pool = start_pool()
      stats = Compute.info(pool)
      dirty = :erlang.system_info(:dirty_cpu_schedulers_online)
      assert stats.max_concurrency == max(1, dirty - 1)
      assert stats.max_queue == 100
      assert Compute.default_max_concurrency() == max(1, dirty - 1)
    end
  end

  describe "run/3" do
    test "normalises results" do
      pool = start_pool()
      assert Compute.run(pool, fn -> :value end) == {:ok, :value}
      assert Compute.run(pool, fn -> {:ok, 1} end) == {:ok, 1}
      assert Compute.run(pool, fn -> {:error, :mine} end) == {:error, :mine}
      assert Compute.run(pool, {Enum, :sum, [[1, 2, 3]]}) == {:ok, 6}

      assert {:error, {:exception, %RuntimeError{message: "boom"}, [_ | _]}} =
               Compute.run(pool, fn -> raise "boom" end)

      assert Compute.run(pool, fn -> throw(:ball) end) == {:error, {:throw, :ball}}
      assert Compute.run(pool, fn -> exit(:bye) end) == {:error, {:exit, :bye}}
      assert %{completed: 7, started: 7} = Compute.info(pool)
    end

    test "{name, node}: this node's pool by name, another node's only over distribution" do
      pool = start_pool()
      assert Compute.run({pool, node()}, fn -> :here end) == {:ok, :here}
      assert Compute.run({:no_such_pool, node()}, fn -> 1 end) == {:error, :not_running}

      # Without distribution no pool runs on another node; with it, the node is not there.
      assert Compute.run({pool, :nobody@nowhere}, fn -> 1 end) in [
               {:error, :not_running},
               {:error, {:pool_down, :noconnection}}
             ]
    end

    test "bad arguments raise ArgumentError; a missing pool is {:error, :not_running}" do
      pool = start_pool()

      assert_raise ArgumentError, ~r/0-arity function/, fn ->
        Compute.run(pool, Hotpath.Opaque.value(fn _ -> 1 end))
      end

      assert_raise ArgumentError, ~r/0-arity function/, fn ->
        Compute.run(pool, Hotpath.Opaque.value(:job))
      end

      assert_raise ArgumentError, ~r/:timeout/, fn ->
        Compute.run(pool, fn -> 1 end, timeout: -1)
      end

      assert_raise ArgumentError, ~r/unknown options/, fn ->
        Compute.run(pool, fn -> 1 end, t: 1)
      end

      # Beyond what `receive ... after` accepts: refused before the job is queued.
      assert_raise ArgumentError,
                   ~r/:timeout must be an integer in 0..4294967295 or :infinity/,
                   fn ->
                     Compute.run(pool, fn -> 1 end, timeout: 2 ** 33)
                   end

      assert %{started: 0} = Compute.info(pool)

      assert Compute.run(:no_such_pool, fn -> 1 end) == {:error, :not_running}
      assert Compute.run({:global, :no_such_pool}, fn -> 1 end) == {:error, :not_running}
      dead = spawn(fn -> :ok end)
      ref = Process.monitor(dead)
      assert_receive {:DOWN, ^ref, _, _, _}
      assert Compute.run(dead, fn -> 1 end) == {:error, :not_running}

      for bad <- ["pool", 1, nil, {:a, :b, :c}, [:pool], %{}] do
        assert_raise ArgumentError, ~r/needs a pool/, fn ->
          Compute.run(Hotpath.Opaque.value(bad), fn -> 1 end)
        end
      end

      # A live process that is not a pool is refused without sending it anything.
      assert_raise ArgumentError, ~r/not a Hotpath.Compute pool/, fn ->
        Compute.run(self(), fn -> 1 end)
      end

      refute_received _
      assert Compute.info(pool).started == 0
    end

    test "info/1: ArgumentError for what is not a pool, NotRunningError when none runs" do
      pool = start_pool()
      assert %{running: 0, draining: 0, queued: 0} = Compute.info(pool)

      for bad <- ["pool", 1, nil, {:a, :b, :c}, [:pool], make_ref()] do
        assert_raise ArgumentError, ~r/info\/1 needs a pool/, fn ->
          Compute.info(Hotpath.Opaque.value(bad))
        end
      end

      assert_raise ArgumentError, ~r/not a Hotpath.Compute pool/, fn -> Compute.info(self()) end

      error = assert_raise Hotpath.NotRunningError, fn -> Compute.info(:no_such_pool) end
      assert error.module == Compute and error.name == :no_such_pool

      # Unknown calls and casts do not crash a pool.
      pid = Process.whereis(pool)
      assert GenServer.call(pool, :bogus) == {:error, :unknown_call}
      GenServer.cast(pool, :bogus)
      assert Compute.info(pool).running == 0
      assert Process.whereis(pool) == pid
    end

    test "a full queue answers :overloaded at once and runs nothing" do
      pool = start_pool(max_concurrency: 1, max_queue: 1)
      test = self()
      running = Task.async(fn -> Compute.run(pool, blocker(test), timeout: :infinity) end)
      assert_receive {:blocked, worker}
      queued = Task.async(fn -> Compute.run(pool, fn -> :queued_ran end, timeout: :infinity) end)
      eventually(fn -> Compute.info(pool).queued == 1 end)

      assert Compute.run(pool, fn -> send(test, :must_not_run) end) == {:error, :overloaded}

      assert_receive {:telemetry, [:hotpath, :compute, :pool, :overloaded],
                      %{running: 1, queued: 1}, _}

      send(worker, :release)
      assert Task.await(running) == {:ok, :released}
      assert Task.await(queued) == {:ok, :queued_ran}
      refute_received :must_not_run
      assert %{rejected: 1, completed: 2, running: 0, queued: 0} = Compute.info(pool)
    end

    test "max_queue: 0 refuses whatever cannot start at once" do
      pool = start_pool(max_concurrency: 1, max_queue: 0)
      test = self()
      task = Task.async(fn -> Compute.run(pool, blocker(test)) end)
      assert_receive {:blocked, worker}
      assert Compute.run(pool, fn -> 1 end) == {:error, :overloaded}
      send(worker, :release)
      assert Task.await(task) == {:ok, :released}
    end
  end

  describe "cancellation" do
    test "a timeout cancels the running native work: its step counter stops" do
      pool = start_pool(max_concurrency: 1)
      test = self()
      job = fn -> Compute.spin(1_000_000, step_us: 5_000, notify: test) end

      assert Compute.run(pool, job, timeout: 100) == {:error, :timeout}
      assert_receive {:hotpath_compute_job, native}
      eventually(fn -> Compute.job_info(native).state == :cancelled end)
      info = assert_stopped(native)
      assert info.steps > 0

      assert_receive {:telemetry, [:hotpath, :compute, :job, :exception], %{duration: _},
                      %{kind: :cancelled, reason: :timeout}}

      # The slot is free again and no late result reaches the caller.
      assert Compute.run(pool, fn -> :next end) == {:ok, :next}
      refute_received {_, {:result, _}}
      assert %{cancelled: 1, running: 0} = Compute.info(pool)
    end

    test "a timeout drops a queued job before it starts" do
      pool = start_pool(max_concurrency: 1)
      test = self()
      task = Task.async(fn -> Compute.run(pool, blocker(test), timeout: :infinity) end)
      assert_receive {:blocked, worker}

      assert Compute.run(pool, fn -> send(test, :must_not_run) end, timeout: 50) ==
               {:error, :timeout}

      eventually(fn -> Compute.info(pool).queued == 0 end)
      send(worker, :release)
      assert Task.await(task) == {:ok, :released}
      refute_received :must_not_run
      assert %{cancelled: 1, started: 1} = Compute.info(pool)
    end

    test "the caller's death cancels its running native work" do
      pool = start_pool(max_concurrency: 1)
      test = self()

      caller =
        spawn(fn ->
          Compute.run(pool, fn -> Compute.spin(1_000_000, step_us: 5_000, notify: test) end,
            timeout: :infinity
          )
        end)

      assert_receive {:hotpath_compute_job, native}
      eventually(fn -> Compute.job_info(native).steps >= 2 end)
      Process.exit(caller, :kill)

      eventually(fn -> Compute.job_info(native).state == :cancelled end)
      assert_stopped(native)
      eventually(fn -> Compute.info(pool).running == 0 end)

      assert_receive {:telemetry, [:hotpath, :compute, :job, :exception], _,
                      %{kind: :cancelled, reason: :caller_down}}
    end

    test "a dead owner cancels a native job used without a pool" do
      test = self()
      owner = spawn(fn -> Compute.spin(1_000_000, step_us: 5_000, notify: test) end)
      assert_receive {:hotpath_compute_job, native}
      eventually(fn -> Compute.job_info(native).steps >= 1 end)
      Process.exit(owner, :kill)
      eventually(fn -> Compute.job_info(native).state == :cancelled end)
      assert_stopped(native)
    end

    test "cancel/1 stops a job from another process" do
      test = self()
      task = Task.async(fn -> Compute.spin(1_000_000, step_us: 5_000, notify: test) end)
      assert_receive {:hotpath_compute_job, native}
      assert Compute.cancel(native)
      refute Compute.cancel(native)
      assert Task.await(task) == {:error, :cancelled}
      assert %{state: :cancelled} = assert_stopped(native)
    end
  end

  describe "panics" do
    test "a native panic is {:error, {:panic, message}} and the pool goes on" do
      pool = start_pool(max_concurrency: 2)

      assert Compute.run(pool, fn -> Compute.spin(5, step_us: 100, panic_at: 1) end) ==
               {:error, {:panic, "spin: deliberate panic in step 1"}}

      assert Compute.run(pool, fn -> Hotpath.Native.debug_fail(:panic) end) ==
               {:error, {:panic, "debug_fail: deliberate panic"}}

      assert Compute.run(pool, fn -> Hotpath.Native.debug_unguarded_panic() end) ==
               {:error, {:panic, "native code panicked (nif_panicked)"}}

      assert_receive {:telemetry, [:hotpath, :compute, :job, :exception], _,
                      %{kind: :panic, reason: "spin: deliberate panic in step 1"}}

      # Many panicking jobs next to healthy ones: every result arrives, the VM is fine.
      results =
        1..40
        |> Enum.map(fn i ->
          Task.async(fn ->
            panic_at = if rem(i, 2) == 0, do: 0

            Compute.run(pool, fn -> Compute.spin(2, step_us: 200, panic_at: panic_at) end,
              timeout: :infinity
            )
          end)
        end)
        |> Enum.map(&Task.await(&1, 30_000))

      assert Enum.count(results, &match?({:ok, _}, &1)) == 20
      assert Enum.count(results, &match?({:error, {:panic, _}}, &1)) == 20
      assert %{running: 0, queued: 0} = Compute.info(pool)
    end

    test "a failed native job refuses further steps" do
      assert {:error, {:panic, _}} = Compute.spin(3, step_us: 100, panic_at: 0)
    end
  end

  test "a pool crash kills its jobs, cancels their native work and leaks no slots" do
    name = :"compute_crash_#{System.unique_integer([:positive])}"
    test = self()
    start_supervised!({Compute, name: name, max_concurrency: 2, max_queue: 5})
    old = Process.whereis(name)

    callers =
      for _ <- 1..4 do
        Task.async(fn ->
          Compute.run(name, fn -> Compute.spin(1_000_000, step_us: 5_000, notify: test) end,
            timeout: :infinity
          )
        end)
      end

    natives =
      for _ <- 1..2 do
        assert_receive {:hotpath_compute_job, native}
        native
      end

    eventually(fn -> Compute.info(name).queued == 2 end)

    Process.exit(old, :kill)
    assert Enum.map(callers, &Task.await/1) == List.duplicate({:error, {:pool_down, :killed}}, 4)

    for native <- natives do
      eventually(fn -> Compute.job_info(native).state == :cancelled end)
      assert_stopped(native)
    end

    new = eventually(fn -> (pid = Process.whereis(name)) && pid != old && pid end)
    assert %{running: 0, queued: 0, max_concurrency: 2} = Compute.info(new)

    # Both slots are usable at once in the restarted pool.
    blockers = for _ <- 1..2, do: Task.async(fn -> Compute.run(name, blocker(test)) end)

    workers =
      for _ <- 1..2 do
        assert_receive {:blocked, w}
        w
      end

    assert Compute.info(name).running == 2
    Enum.each(workers, &send(&1, :release))
    assert Enum.map(blockers, &Task.await/1) == [{:ok, :released}, {:ok, :released}]
  end

  test "stopping the pool kills its running jobs" do
    pool = start_pool(max_concurrency: 1)
    test = self()
    task = Task.async(fn -> Compute.run(pool, blocker(test), timeout: :infinity) end)
    assert_receive {:blocked, worker}
    ref = Process.monitor(worker)
    stop_supervised!(pool)
    assert_receive {:DOWN, ^ref, :process, ^worker, :killed}
    assert {:error, {:pool_down, _}} = Task.await(task)
  end

  test "the concurrency bound is never exceeded, observed in Elixir and in native code" do
    max = 2
    pool = start_pool(max_concurrency: max, max_queue: 100)
    counter = :atomics.new(2, [])
    Hotpath.Native.compute_native_load(true)

    results =
      1..30
      |> Enum.map(fn _ ->
        Task.async(fn ->
          Compute.run(
            pool,
            fn ->
              now = :atomics.add_get(counter, 1, 1)
              bump_max(counter, now)
              result = Compute.spin(3, step_us: 2_000)
              :atomics.sub(counter, 1, 1)
              result
            end,
            timeout: :infinity
          )
        end)
      end)
      |> Enum.map(&Task.await(&1, 60_000))

    assert Enum.all?(results, &match?({:ok, _}, &1))
    assert :atomics.get(counter, 2) <= max
    assert :atomics.get(counter, 2) >= 1
    {_active, native_peak} = Hotpath.Native.compute_native_load(false)
    assert native_peak <= max
    assert %{completed: 30, started: 30, running: 0} = Compute.info(pool)
  end

  test "cancelled argon2 hashes keep their slot until the native hash has ended" do
    # A hash cannot be interrupted: a job killed by its timeout exits at once while its
    # dirty NIF runs on. The slot must stay taken until then, or the next hash would start
    # beside it. Observed natively: the peak of concurrently running kernels.
    pool = start_pool(max_concurrency: 1, max_queue: 100)
    # Native work of earlier tests (other pools' draining jobs) must not count.
    eventually(fn -> Hotpath.Native.compute_native_load(false) |> elem(0) == 0 end)
    Hotpath.Native.compute_native_load(true)

    # About 120 ms per hash (three times the default cost): far longer than the timeout,
    # also on a loaded machine where the pool is slow to act on an expired caller.
    for _ <- 1..10 do
      assert {:error, :timeout} =
               Compute.run(pool, fn -> Hotpath.Password.hash("pw", t_cost: 6) end, timeout: 15)
    end

    eventually(fn -> match?(%{running: 0, queued: 0}, Compute.info(pool)) end)
    eventually(fn -> Hotpath.Native.compute_native_load(false) |> elem(0) == 0 end)
    assert {0, 1} = Hotpath.Native.compute_native_load(false)
    assert %{draining: 0} = Compute.info(pool)
    # (A job whose hash ended just as its caller timed out counts as completed.)
    stats = Compute.info(pool)
    assert %{cancelled: c, completed: d, running: 0, queued: 0} = stats
    assert c + d == 10 and c >= 1, inspect(stats)
    assert Compute.run(pool, fn -> :after end) == {:ok, :after}
  end

  test "a draining slot is counted in stats and freed when the native work ends" do
    pool = start_pool(max_concurrency: 1, max_queue: 10)
    test = self()
    eventually(fn -> Hotpath.Native.compute_native_load(false) |> elem(0) == 0 end)
    Hotpath.Native.compute_native_load(true)

    job = fn ->
      send(test, {:hashing, self()})
      Hotpath.Password.hash("pw", m_cost: 65_536, t_cost: 2)
    end

    task = Task.async(fn -> Compute.run(pool, job, timeout: :infinity) end)
    assert_receive {:hashing, worker}
    # Let the dirty NIF start, then kill the job (its caller dies: the job is cancelled).
    eventually(fn -> elem(Hotpath.Native.compute_native_load(false), 0) >= 1 end)
    Task.shutdown(task, :brutal_kill)
    ref = Process.monitor(worker)
    assert_receive {:DOWN, ^ref, :process, ^worker, _}

    queued = Task.async(fn -> Compute.run(pool, fn -> :next end, timeout: :infinity) end)
    # Either the hash is still running (its slot drains, the next job waits) or it ended.
    eventually(fn ->
      stats = Compute.info(pool)
      (stats.draining == 1 and stats.queued == 1) or stats.draining == 0
    end)

    stats = Compute.info(pool)
    assert stats.draining == 0 or stats.running == 1

    assert Task.await(queued, 30_000) == {:ok, :next}
    assert {_, 1} = Hotpath.Native.compute_native_load(false)
    eventually(fn -> match?(%{running: 0, draining: 0, queued: 0}, Compute.info(pool)) end)
  end

  defp bump_max(counter, now) do
    seen = :atomics.get(counter, 2)

    if now > seen and :atomics.compare_exchange(counter, 2, seen, now) != :ok,
      do: bump_max(counter, now),
      else: :ok
  end

  test "telemetry: start and stop carry queue time, run time and saturation" do
    pool = start_pool(max_concurrency: 1)
    assert {:ok, :done} = Compute.run(pool, fn -> :done end)

    assert_receive {:telemetry, [:hotpath, :compute, :job, :start], start, meta}
    assert %{running: 1, queued: 0, saturation: 1.0, queue_time: qt} = start
    assert is_integer(qt) and qt >= 0
    assert %{pool: ^pool, max_concurrency: 1, max_queue: 100} = meta

    assert_receive {:telemetry, [:hotpath, :compute, :job, :stop], stop, stop_meta}
    assert stop.duration >= 0 and stop.queue_time == qt
    assert stop_meta == %{pool: pool, status: :ok, error: nil}

    assert {:error, :mine} = Compute.run(pool, fn -> {:error, :mine} end)

    assert_receive {:telemetry, [:hotpath, :compute, :job, :stop], _,
                    %{status: :error, error: :mine}}
  end

  test "spin/2 validates its arguments" do
    assert_raise ArgumentError, ~r/steps/, fn -> Compute.spin(-1) end
    assert_raise ArgumentError, ~r/:step_us/, fn -> Compute.spin(1, step_us: 0) end
    assert_raise ArgumentError, ~r/:step_us/, fn -> Compute.spin(1, step_us: 2_000_000) end
    assert_raise ArgumentError, ~r/:panic_at/, fn -> Compute.spin(1, panic_at: -1) end
    assert_raise ArgumentError, ~r/:notify/, fn -> Compute.spin(1, notify: :me) end
    assert_raise ArgumentError, ~r/unknown options/, fn -> Compute.spin(1, bogus: 1) end
    assert {:ok, _} = Compute.spin(0)
  end

  test "native job NIFs reject what is not theirs" do
    spin = Hotpath.Native.compute_job_new({:spin, 1, 100, nil})
    digest = Hotpath.Native.compute_job_new({:digest, :sha256, 100})

    assert_raise ArgumentError, ~r/not a spin job/, fn ->
      Hotpath.Native.compute_spin_step(digest)
    end

    assert_raise ArgumentError, fn -> Hotpath.Native.compute_digest_update(spin, "x", 0) end

    assert_raise ArgumentError, ~r/beyond the end/, fn ->
      Hotpath.Native.compute_digest_update(digest, "x", 2)
    end

    assert_raise ArgumentError, ~r/not a digest job/, fn ->
      Hotpath.Native.compute_digest_finish(spin)
    end

    for bad <- [:spin, {:spin, -1, 100, nil}, {:spin, 1, 0, nil}, {:digest, :md5, 100}, {:x}, "x"] do
      assert_raise ArgumentError, fn -> Hotpath.Native.compute_job_new(bad) end
    end

    for bad <- [make_ref(), :x, 1] do
      assert_raise ArgumentError, fn -> Compute.job_info(bad) end
      assert_raise ArgumentError, fn -> Compute.cancel(bad) end
    end
  end
end
