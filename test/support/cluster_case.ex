defmodule Hotpath.ClusterCase do
  @moduledoc false
  # Real Erlang nodes for the cluster tests: the test run makes itself a distributed node
  # (`start_distribution/0`, from test_helper.exs) and starts peer nodes with OTP's `:peer`.
  #
  # Peers are controlled over their standard I/O, not over distribution, so a test can cut
  # the distribution connection (`Node.disconnect/1`) and still drive the peer, and killing a
  # peer's OS process is a real crash. Every peer gets this VM's code path (the test build of
  # Hotpath, test/support included) and starts the :hotpath application. Peers are stopped by
  # the on_exit callback `start_peers/1` registers.

  @host ~c"127.0.0.1"

  @doc """
  Makes this VM a distributed node (starting epmd first if needed). Returns `:ok`, or
  `{:error, reason}` with a sentence saying why distribution is unavailable.
  """
  def start_distribution do
    cond do
      Node.alive?() ->
        :ok

      epmd = System.find_executable("epmd") ->
        # Idempotent: exits at once when an epmd already runs.
        case System.cmd(epmd, ["-daemon"], stderr_to_stdout: true) do
          {_, 0} -> start_node()
          {out, status} -> {:error, "epmd -daemon failed (exit #{status}): #{String.trim(out)}"}
        end

      true ->
        {:error, "epmd is not on PATH (it comes with Erlang, Debian package erlang-base)"}
    end
  end

  defp start_node do
    name = :"hotpath_test_#{System.pid()}@127.0.0.1"

    # :net_kernel.start/2 with a map (OTP 24.3+): Node.start/2 with :longnames is deprecated
    # in Elixir 1.19.
    case :net_kernel.start(name, %{name_domain: :longnames}) do
      {:ok, _} -> :ok
      {:error, reason} -> {:error, "starting node #{inspect(name)} failed: #{inspect(reason)}"}
    end
  end

  @doc """
  Starts `count` peer nodes connected to this node and to each other; stops them on exit of
  the calling test or module. Returns `[%{pid: control_pid, node: node}]`.
  """
  def start_peers(count) do
    peers =
      1..count
      |> Enum.map(fn _ -> Task.async(&start_peer/0) end)
      |> Enum.map(&Task.await(&1, 60_000))

    # on_exit callbacks run last-registered first: the filter goes after the peers stop.
    quiet_global()
    ExUnit.Callbacks.on_exit(fn -> Enum.each(peers, &stop_peer/1) end)
    connect_all(peers)
    peers
  end

  # OTP's global logs a warning for each connection it cuts to keep partitions disjoint
  # (prevent_overlapping_partitions): expected when tests kill or cut off nodes.
  defp quiet_global do
    filter = fn event, _ -> if global_partition_warning?(event), do: :stop, else: :ignore end

    case :logger.add_primary_filter(:hotpath_cluster_tests, {filter, nil}) do
      :ok ->
        ExUnit.Callbacks.on_exit(fn ->
          :logger.remove_primary_filter(:hotpath_cluster_tests)
        end)

      {:error, {:already_exist, _}} ->
        :ok
    end
  end

  defp start_peer do
    name = :"hotpath_peer_#{System.pid()}_#{System.unique_integer([:positive])}"

    {:ok, pid, node} =
      :peer.start(%{
        name: name,
        host: @host,
        longnames: true,
        connection: :standard_io,
        args: [~c"-setcookie", Atom.to_charlist(Node.get_cookie())]
      })

    :ok = :peer.call(pid, :code, :add_paths, [:code.get_path()])
    {:ok, _} = :peer.call(pid, :application, :ensure_all_started, [:hotpath])
    # Peers print through this VM's console: keep them to errors (global's warnings about
    # the partitions the disconnect test makes on purpose would fill the test output).
    :ok = :peer.call(pid, :logger, :set_primary_config, [:level, :error])
    %{pid: pid, node: node}
  end

  @doc false
  def global_partition_warning?(%{msg: msg}) do
    text =
      case msg do
        {:string, string} -> string
        {format, args} when is_list(args) -> :io_lib.format(format, args)
        _report -> ""
      end

    IO.chardata_to_string(text) =~ "in order to prevent overlapping partitions"
  rescue
    _ -> false
  end

  @doc "Stops a peer (nothing happens if it is already gone)."
  def stop_peer(%{pid: pid}) do
    :peer.stop(pid)
  catch
    :exit, _ -> :ok
  end

  @doc """
  Connects every peer to this node and to each other, and waits until they all see it and
  OTP's `global` is done with the new connections (`await_global/1`).
  """
  def connect_all(peers) do
    nodes = [node() | Enum.map(peers, & &1.node)]

    for %{pid: pid} <- peers, other <- nodes do
      :peer.call(pid, :net_kernel, :connect_node, [other])
    end

    eventually(fn ->
      Enum.all?(peers, fn %{pid: pid, node: n} ->
        MapSet.new(:peer.call(pid, :erlang, :nodes, [])) == MapSet.new(nodes -- [n])
      end)
    end)

    await_global(peers)
  end

  @doc """
  Waits until OTP's `global` is idle on this node and on every peer: synced with every node it
  knows (`:global.sync/0`) and holding no lock. After a new connection `global` locks the
  nodes of both sides, exchanges its names and then releases the lock with a `gen_server`
  call to each of those nodes: a connection cut before that is set up again by the call (an
  auto-connect), which undoes the cut a few milliseconds later. Call it before cutting a
  connection on purpose. Runs over the peers' control channels (works while cut off).
  """
  def await_global(peers) do
    idle? = fn run ->
      run.(:global, :sync, []) == :ok and run.(:ets, :info, [:global_locks, :size]) == 0
    end

    eventually(fn ->
      idle?.(&apply/3) and Enum.all?(peers, fn peer -> idle?.(&on(peer, &1, &2, &3)) end)
    end)
  end

  @doc "Runs `m.f(args)` on a peer over its control channel (works without distribution)."
  def on(%{pid: pid}, m, f, args), do: :peer.call(pid, m, f, args, 30_000)

  @doc "The peer's OS process id."
  def os_pid(peer), do: peer |> on(:os, :getpid, []) |> List.to_string()

  @doc """
  Stops the peer's OS process (SIGSTOP) and waits until every thread of it is stopped (the
  signal is delivered asynchronously): the node stays connected but answers nothing, like a
  VM in a long pause. Returns the OS pid for `resume/1`.
  """
  def pause(peer) do
    pid = os_pid(peer)
    {_, 0} = System.cmd("kill", ["-STOP", pid])

    eventually(fn ->
      Path.wildcard("/proc/#{pid}/task/*/stat")
      |> Enum.all?(fn stat ->
        case File.read(stat) do
          # The state follows the command name, which is in parentheses.
          {:ok, text} ->
            text |> String.split(") ", parts: 2) |> List.last() |> String.starts_with?("T")

          {:error, _} ->
            true
        end
      end)
    end)

    pid
  end

  @doc "Resumes a peer stopped by `pause/1` (SIGCONT)."
  def resume(pid), do: System.cmd("kill", ["-CONT", pid])

  @doc """
  Starts `child_spec` on `node` under a supervisor that outlives the call (unlinked); this node
  uses the test's own supervisor. Stopped on exit of the test (if the node is still there).
  """
  def start_on(node, child_spec) when node == node() do
    ExUnit.Callbacks.start_supervised!(child_spec)
  end

  def start_on(node, child_spec) do
    sup = :erpc.call(node, __MODULE__, :start_detached, [child_spec], 30_000)

    ExUnit.Callbacks.on_exit(fn ->
      # The peer may be dead or cut off by the test by now.
      if node in Node.list(),
        do: catch_exit_or_error(fn -> :erpc.call(node, Supervisor, :stop, [sup]) end)
    end)

    sup
  end

  defp catch_exit_or_error(fun) do
    fun.()
  catch
    _kind, _reason -> :ok
  end

  @doc false
  def start_detached(child_spec) do
    {:ok, sup} = Supervisor.start_link([child_spec], strategy: :one_for_one)
    Process.unlink(sup)
    sup
  end

  @doc "`Hotpath.Test.Eventually.eventually/2` with a 10 s default (peers are slow to converge)."
  def eventually(fun, timeout \\ 10_000), do: Hotpath.Test.Eventually.eventually(fun, timeout)

  @doc "Waits until the limiter's view on each of `nodes` has exactly `members`."
  def await_members(limiter, nodes, members) do
    expected = Enum.sort(members)

    eventually(fn ->
      Enum.all?(nodes, fn n ->
        :erpc.call(n, Hotpath.RateLimiter, :info, [limiter]).cluster.members == expected
      end)
    end)
  end

  @doc """
  Runs on a node: `procs` processes each hit every key of `keys` `times` times (keys in
  order, from a different start per process) and returns `%{key => admitted}`. When
  `progress` is `{pid, after}`, it sends `{:progress, node()}` to `pid` once `after` hits are
  done in the first process.
  """
  def hammer(limiter, keys, procs, times, progress \\ nil) do
    keys = List.to_tuple(keys)
    n = tuple_size(keys)

    1..procs
    |> Enum.map(fn p ->
      Task.async(fn ->
        Enum.reduce(0..(n * times - 1), %{}, fn i, acc ->
          if p == 1 and match?({_, ^i}, progress),
            do: send(elem(progress, 0), {:progress, node()})

          key = elem(keys, rem(i + p, n))

          # 3-tuples of one policy, 4-tuples of several.
          case Hotpath.RateLimiter.hit(limiter, key) do
            {:allow, _, _} -> Map.update(acc, key, 1, &(&1 + 1))
            {:allow, _, _, _} -> Map.update(acc, key, 1, &(&1 + 1))
            {:deny, _, _} -> acc
            {:deny, _, _, _} -> acc
          end
        end)
      end)
    end)
    |> Enum.map(&Task.await(&1, :infinity))
    |> Enum.reduce(%{}, &Map.merge(&1, &2, fn _k, a, b -> a + b end))
  end

  @doc "Runs on a node: records each of `values` into each metric of `metrics` with `tags`."
  def record_many(instance, metrics, values, tags) do
    for v <- values,
        metric <- metrics,
        do: :ok = Hotpath.Metrics.record(instance, metric, v, tags)

    :ok
  end

  @doc "Adds up per-key maps of admissions."
  def total(maps), do: Enum.reduce(maps, %{}, &Map.merge(&1, &2, fn _k, a, b -> a + b end))
end
