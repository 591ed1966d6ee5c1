defmodule Hotpath.SchedulerFairness.ComputeTest do
  # Every normal-scheduler NIF of Hotpath.Compute, Hotpath.Digest and Hotpath.Password, called
  # in a loop with the largest input it accepts, must not hold its scheduler for more than
  # about 1 ms at a stretch (measured with :running trace events, see Hotpath.SchedulerTrace).
  use ExUnit.Case, async: false

  alias Hotpath.{Compute, Digest, Native, Password, SchedulerTrace}

  # digest_small's bound, and Hotpath.Digest's largest :dirty_threshold.
  @small_max 128 * 1024
  # The longest PHC string password_info reads.
  @phc_max 1024

  defp assert_fair(fun, opts \\ []) do
    %{longest_us: us, longest: ends} = SchedulerTrace.longest_stretch(fun, opts)

    assert us < SchedulerTrace.limit_us(),
           "held a normal scheduler for #{us} µs (between #{inspect(ends)})"
  end

  test "digest_small at its largest input, both algorithms" do
    for algorithm <- [:sha256, :blake3] do
      assert_fair(fn data -> Native.digest_small(algorithm, data) end,
        setup: fn -> :crypto.strong_rand_bytes(@small_max) end
      )
    end
  end

  test "Digest.hash/3 on the calling scheduler at the largest :dirty_threshold, iodata too" do
    assert_fair(fn data -> Digest.sha256(data, dirty_threshold: @small_max) end,
      setup: fn -> :crypto.strong_rand_bytes(@small_max) end
    )

    # 128 KiB as 1 KiB pieces: the join and the digest both on the calling scheduler.
    assert_fair(fn data -> Digest.blake3(data, dirty_threshold: @small_max) end,
      setup: fn -> for _ <- 1..128, do: :crypto.strong_rand_bytes(1024) end
    )
  end

  test "Digest.hash/3 above the threshold: only the dirty steps run long" do
    assert_fair(fn data -> Digest.sha256(data) end,
      setup: fn -> :crypto.strong_rand_bytes(4 * 1024 * 1024) end,
      ms: 100
    )
  end

  test "native job NIFs: new, info, cancel, finish" do
    assert_fair(fn _ ->
      job = Native.compute_job_new({:digest, :sha256, 10_000})
      Compute.job_info(job)
      {:ok, _} = Native.compute_digest_finish(job)
      Compute.cancel(job)
      Compute.job_info(job)
    end)

    assert_fair(fn _ ->
      job = Native.compute_job_new({:spin, 1_000_000, 1_000_000, nil})
      Compute.cancel(job)
      Compute.job_info(job)
    end)
  end

  test "a digest job finished after hashing 4 MiB" do
    assert_fair(
      fn data ->
        job = Native.compute_job_new({:digest, :blake3, 1_000_000})
        {:ok, _} = Native.compute_digest_update(job, data, 0)
        {:ok, _} = Native.compute_digest_finish(job)
      end,
      setup: fn -> :crypto.strong_rand_bytes(4 * 1024 * 1024) end,
      ms: 100
    )
  end

  test "pool bookkeeping NIFs: load, watch, is_pool" do
    dead = spawn(fn -> :ok end)

    assert_fair(fn _ ->
      Native.compute_native_load(false)
      false = Native.compute_native_watch(dead, self())
      false = Native.compute_is_pool(self())
    end)
  end

  test "password_info at the longest PHC string, valid and not" do
    salt = Base.encode64(:crypto.strong_rand_bytes(48), padding: false)
    hash = Base.encode64(:crypto.strong_rand_bytes(64), padding: false)
    longest_valid = "$argon2id$v=19$m=4294967295,t=4294967295,p=16777215$#{salt}$#{hash}"
    garbage = "$argon2id$v=19$m=64,t=1,p=1$" <> String.duplicate("A", @phc_max - 28)
    assert byte_size(garbage) == @phc_max

    for phc <- [longest_valid, garbage] do
      assert_fair(
        fn phc ->
          Password.info(phc)
          Password.needs_rehash?(phc)
        end,
        setup: fn -> phc end
      )
    end
  end

  test "password verification refused before hashing stays on the normal scheduler briefly" do
    # Costs above the limits are refused by the dirty NIF before any work: the caller is
    # scheduled out around a dirty call that returns at once.
    over =
      "$argon2id$v=19$m=4294967295,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$3fUQ941rsmo3/Cpi+6K2zMNtfMLWcfukgfsepsnYCw4"

    assert_fair(fn _ -> {:error, {:incompatible, _}} = Password.verify("pw", over) end)
  end
end
