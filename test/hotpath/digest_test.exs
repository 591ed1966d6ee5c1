defmodule Hotpath.DigestTest do
  use ExUnit.Case, async: true

  import Hotpath.ComputeHelpers
  alias Hotpath.Digest

  doctest Digest

  test "known answers" do
    assert Base.encode16(Digest.blake3("abc"), case: :lower) ==
             "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"

    assert Digest.sha256("abc") == :crypto.hash(:sha256, "abc")
  end

  test "SHA-256 equals :crypto on both paths, around the thresholds" do
    for size <- [0, 1, 65_535, 65_536, 65_537, 262_144, 1_000_003, 3 * 1024 * 1024] do
      data = :crypto.strong_rand_bytes(size)
      expected = :crypto.hash(:sha256, data)
      assert Digest.sha256(data) == expected, "size #{size}"
      assert Digest.sha256(data, dirty_threshold: 0) == expected, "size #{size}"
    end
  end

  test "BLAKE3: the dirty chunked path equals the one-shot path" do
    for size <- [0, 1, 1024, 65_537, 200_000, 262_144] do
      data = :crypto.strong_rand_bytes(size)

      assert Digest.blake3(data, dirty_threshold: 0) ==
               Digest.blake3(data, dirty_threshold: 131_072)

      assert Digest.blake3(data, dirty_threshold: 0, step_us: 1) == Digest.blake3(data)
    end
  end

  test "any iodata shape gives the digest of its bytes" do
    :rand.seed(:exsss, {1, 2, 3})

    for _ <- 1..60 do
      data = random_iodata(3)
      flat = IO.iodata_to_binary(data)

      for alg <- [:blake3, :sha256], threshold <- [0, 65_536] do
        assert Digest.hash(alg, data, dirty_threshold: threshold) ==
                 Digest.hash(alg, flat, dirty_threshold: threshold)
      end

      assert Digest.sha256(data, dirty_threshold: 0) == :crypto.hash(:sha256, flat)
    end
  end

  defp random_iodata(0), do: random_leaf()

  defp random_iodata(depth) do
    list = for _ <- 0..:rand.uniform(4), do: random_iodata(depth - 1)
    # Sometimes an improper list with a binary tail.
    if :rand.uniform(4) == 1, do: [list | random_leaf_binary()], else: list
  end

  defp random_leaf do
    case :rand.uniform(4) do
      1 -> :rand.uniform(256) - 1
      2 -> random_leaf_binary()
      3 -> :crypto.strong_rand_bytes(:rand.uniform(100_000))
      4 -> []
    end
  end

  defp random_leaf_binary, do: :crypto.strong_rand_bytes(:rand.uniform(300))

  test "pieces/1 keeps large binaries as they are and joins small runs" do
    big = :binary.copy("b", 100_000)
    pieces = Digest.pieces(["a", ?b, big, "c" | "d"])
    assert pieces == ["ab", big, "cd"]
    assert Enum.at(pieces, 1) |> :binary.referenced_byte_size() == 100_000
    assert Digest.pieces(big) == [big]
    assert Digest.pieces([]) == []
  end

  test "progress messages count up to the total" do
    data = :binary.copy("p", 3_000_000)
    digest = Digest.blake3(data, progress: {self(), :prog}, step_us: 100)
    assert digest == Digest.blake3(data)
    counts = collect(:prog)
    assert counts != []
    assert counts == Enum.sort(counts)
    assert List.last(counts) == {3_000_000, 3_000_000}

    Digest.sha256(["x", data], progress: self())
    assert_received {:hotpath_digest_progress, 3_000_001, 3_000_001}
  end

  defp collect(tag) do
    receive do
      {^tag, done, total} -> [{done, total} | collect(tag)]
    after
      0 -> []
    end
  end

  test "the caller's death stops the native digest within a step" do
    test = self()
    chunk = :binary.copy("z", 16 * 1024 * 1024)
    # 16 GiB of input that shares one 16 MiB binary: far longer than this test.
    huge = List.duplicate(chunk, 1024)

    caller = spawn(fn -> Digest.blake3(huge, notify: test) end)
    assert_receive {:hotpath_compute_job, job}
    eventually(fn -> Hotpath.Compute.job_info(job).bytes > 0 end)
    Process.exit(caller, :kill)
    eventually(fn -> Hotpath.Compute.job_info(job).state == :cancelled end)
    info = assert_stopped(job)
    assert info.bytes < 1024 * byte_size(chunk)
  end

  test "cancel/1 makes the digest exit with a clear reason" do
    test = self()
    huge = List.duplicate(:binary.copy("z", 16 * 1024 * 1024), 1024)

    {pid, ref} = spawn_monitor(fn -> Digest.sha256(huge, notify: test) end)

    assert_receive {:hotpath_compute_job, job}
    Hotpath.Compute.cancel(job)
    assert_receive {:DOWN, ^ref, :process, ^pid, {:hotpath_digest, :cancelled}}, 5_000
  end

  test "behind a pool" do
    name = :"digest_pool_#{System.unique_integer([:positive])}"
    start_supervised!({Hotpath.Compute, name: name})
    data = :binary.copy("q", 1_000_000)

    assert Hotpath.Compute.run(name, fn -> Digest.sha256(data) end) ==
             {:ok, :crypto.hash(:sha256, data)}
  end

  test "bad inputs raise ArgumentError" do
    assert_raise ArgumentError, ~r/unknown digest algorithm :md5/, fn ->
      Digest.hash(Hotpath.Opaque.value(:md5), "x")
    end

    for bad <- [nil, :atom, 1, [256], [-1], [:a], %{}, {"a"}, ["a" | :b]] do
      assert_raise ArgumentError, ~r/binary or iodata/, fn -> Digest.blake3(bad) end
    end

    assert_raise ArgumentError, ~r/:dirty_threshold/, fn ->
      Digest.sha256("x", dirty_threshold: 300_000)
    end

    assert_raise ArgumentError, ~r/:dirty_threshold/, fn ->
      Digest.sha256("x", dirty_threshold: -1)
    end

    assert_raise ArgumentError, ~r/:step_us/, fn -> Digest.sha256("x", step_us: 0) end
    assert_raise ArgumentError, ~r/:progress/, fn -> Digest.sha256("x", progress: :me) end
    assert_raise ArgumentError, ~r/:notify/, fn -> Digest.sha256("x", notify: :me) end
    assert_raise ArgumentError, ~r/unknown options/, fn -> Digest.sha256("x", fast: true) end

    assert_raise ArgumentError, ~r/at most 131072 bytes/, fn ->
      Hotpath.Native.digest_small(:sha256, :binary.copy("x", 131_073))
    end

    # The threshold's maximum keeps a normal-scheduler digest well under 1 ms.
    assert_raise ArgumentError, ~r/:dirty_threshold must be an integer in 0..131072/, fn ->
      Digest.sha256("x", dirty_threshold: 131_073)
    end

    assert_raise ArgumentError, fn -> Hotpath.Native.digest_small(:md5, "x") end
  end
end
