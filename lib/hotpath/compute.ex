defmodule Hotpath.Compute do
  @moduledoc """
  Bounded, cancellable CPU-heavy work on dirty CPU schedulers.

  A `Hotpath.Compute` pool runs at most `max_concurrency` jobs at once and queues at most
  `max_queue` more; a job that finds the queue full is refused at once with
  `{:error, :overloaded}`. Nothing queues without bound, and the VM-wide dirty CPU pool
  (shared with garbage collection and every other NIF library) keeps room to breathe.

      children = [
        {Hotpath.Compute, name: MyApp.Compute, max_concurrency: 1, max_queue: 100}
      ]

      Hotpath.Compute.run(MyApp.Compute, fn -> Hotpath.Password.hash_pwd_salt(pw) end,
        timeout: 5_000)
      #=> {:ok, "$argon2id$v=19$..."}

  ## Jobs

  A job is a 0-arity function or an `{module, function, args}` tuple. It runs in a fresh
  process started by the pool (so the caller's heap and mailbox are untouched). Its return
  value becomes the result of `run/3`: `{:ok, value}` and `{:error, reason}` are returned as
  they are, any other value `v` as `{:ok, v}`.

  Errors (`{:error, reason}`):

    * `:overloaded` - the queue was full; nothing ran.
    * `:timeout` - no result within `:timeout` ms (queue time included). The job is cancelled.
    * `{:panic, message}` - native code panicked; the VM, the pool and other jobs go on.
    * `{:exception, exception, stacktrace}`, `{:throw, value}`, `{:exit, reason}` - the job
      raised, threw or exited.
    * `{:pool_down, reason}` - the pool stopped while the job was pending.
    * `:not_running` - no pool is running under that name (or that pid has exited).
    * any `reason` the job itself returned as `{:error, reason}`.

  Arguments of the wrong shape raise `ArgumentError`: a pool that is neither an atom, a pid,
  `{:global, term}`, `{:via, module, term}` nor `{atom, node}`, a local process that is not a
  `Hotpath.Compute` pool, a bad job or bad options. No function here exits the caller.

  ## Cancellation

  A job is cancelled when `run/3` times out or when its caller dies: a queued job is dropped,
  a running one has its process killed. Hotpath's long kernels (`Hotpath.Digest`, `spin/2`)
  run in steps of about 10 ms on a native resource that monitors the process that started
  it; killing that process sets the resource's cancel flag, and the native step polls the
  flag every fraction of a millisecond, so the native work stops within one step. An argon2
  hash cannot be interrupted: a cancelled hash finishes (tens of milliseconds with the
  defaults, at most a few seconds at `Hotpath.Password`'s caps) and its result is dropped.

  A job's slot is released when its process has exited **and** the native work it started
  has ended: a process killed inside a dirty NIF exits at once while the NIF runs on, so the
  pool keeps that slot (counted in `info/1` as `:draining`, and in `:running`) until the
  native side reports the work finished. So `max_concurrency` bounds the native work too,
  cancelled jobs included. (After a pool *crash* the restarted pool does not know the old
  pool's unfinished native work: at most the old pool's `max_concurrency` jobs overlap with
  the new pool's for as long as they take to end.)

  ## Pool crashes

  Slots are the pool's own state and jobs are linked to the pool: if the pool crashes, its
  jobs are killed (and their native work cancelled), waiting callers get
  `{:error, {:pool_down, reason}}`, and the restarted pool starts with every slot free.

  ## Telemetry

  With `:telemetry` in the host application, job start/stop/exception and overload events are
  emitted; see `Hotpath.Telemetry`.
  """
  alias Hotpath.Compute.Options
  alias Hotpath.Native

  @typedoc "A pool: its registered name or pid."
  @type pool :: GenServer.server()

  @typedoc "A job: a 0-arity function or `{module, function, args}`."
  @type job :: (-> term()) | {module(), atom(), [term()]}

  @typedoc "The result of `run/3`."
  @type result ::
          {:ok, term()}
          | {:error,
             :overloaded
             | :timeout
             | {:panic, String.t()}
             | {:exception, Exception.t(), Exception.stacktrace()}
             | {:throw, term()}
             | {:exit, term()}
             | {:pool_down, term()}
             | :not_running
             | term()}

  @typedoc "A native job resource (see `spin/2`)."
  @type native_job :: reference()

  @doc """
  The default `max_concurrency`: one less than the dirty CPU schedulers online, at least 1.

      iex> Hotpath.Compute.default_max_concurrency() >= 1
      true
  """
  @spec default_max_concurrency() :: pos_integer()
  def default_max_concurrency do
    max(1, :erlang.system_info(:dirty_cpu_schedulers_online) - 1)
  end

  @doc """
  Starts a pool. Options:

  #{Options.docs(:start)}

  Invalid options raise `ArgumentError`.
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts) do
    config = Options.start!(opts)
    GenServer.start_link(Hotpath.Compute.Pool, config, name: config.name)
  end

  @doc """
  A child specification: `{Hotpath.Compute, opts}` in a supervisor, with the options of
  `start_link/1`, validated here (`ArgumentError`). The child id is
  `{Hotpath.Compute, name}`.
  """
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    Options.start!(opts)

    %{
      id: {__MODULE__, Keyword.fetch!(opts, :name)},
      start: {__MODULE__, :start_link, [opts]},
      type: :worker
    }
  end

  @doc """
  Runs `job` in `pool` and waits for its result.

  Options:

  #{Options.docs(:run)}

  Returns `{:error, :not_running}` when no pool runs under `pool`, and raises `ArgumentError`
  when `pool` is not a pool name or is a process that is no pool. See the module docs for
  the results.

      iex> {:ok, _} = Hotpath.Compute.start_link(name: :doc_pool)
      iex> Hotpath.Compute.run(:doc_pool, fn -> 1 + 1 end)
      {:ok, 2}
      iex> Hotpath.Compute.run(:doc_pool, fn -> {:error, :nope} end)
      {:error, :nope}
  """
  @spec run(pool(), job(), keyword()) :: result()
  def run(pool, job, opts \\ []) do
    timeout = Options.run!(job, opts)

    case resolve(pool, "run/3") do
      :not_running -> {:error, :not_running}
      target -> submit(target, job, timeout)
    end
  end

  defp submit(pid, job, timeout) do
    # The monitor reference is also an alias: once demonitored, late messages sent to it
    # (a result after a timeout) are dropped instead of polluting the caller's mailbox.
    ref = :erlang.monitor(:process, pid, [{:alias, :demonitor}])
    send(pid, {:"$hotpath_run", ref, self(), job, System.monotonic_time()})

    receive do
      {^ref, :overloaded} ->
        Process.demonitor(ref, [:flush])
        {:error, :overloaded}

      {^ref, {:result, result}} ->
        Process.demonitor(ref, [:flush])
        result

      {:DOWN, ^ref, :process, _, reason} ->
        {:error, {:pool_down, reason}}
    after
      timeout ->
        Process.demonitor(ref, [:flush])
        send(pid, {:"$hotpath_cancel", ref})
        {:error, :timeout}
    end
  end

  @doc """
  Counters of a pool: `:running` (slots taken), `:draining` (of those, jobs whose process
  has ended while their native work still runs, see "Cancellation"), `:queued`,
  `:max_concurrency`, `:max_queue`, and since start `:started` (jobs that left the queue),
  `:completed` (jobs that returned, whatever their result), `:rejected` (`:overloaded`),
  `:cancelled` (by a timeout or a caller's death, queued or running).

  Raises `ArgumentError` when `pool` is not a pool name or is a process that is no pool,
  `Hotpath.NotRunningError` when no pool runs under that name, and `Hotpath.Compute.Error`
  (reason `{:pool_down, reason}` or `:timeout`) when the pool stops or does not answer
  within 5 s.

      iex> {:ok, _} = Hotpath.Compute.start_link(name: :doc_info_pool, max_concurrency: 2)
      iex> %{running: 0, queued: 0, max_concurrency: 2} = Hotpath.Compute.info(:doc_info_pool)
  """
  @spec info(pool()) :: %{atom() => non_neg_integer()}
  def info(pool) do
    case resolve(pool, "info/1") do
      :not_running ->
        raise Hotpath.NotRunningError, module: __MODULE__, name: pool

      target ->
        try do
          GenServer.call(target, :info)
        catch
          :exit, {:timeout, _} ->
            raise Hotpath.Compute.Error, reason: :timeout, pool: pool

          :exit, {reason, _} when reason in [:noproc, :nodedown] ->
            raise Hotpath.NotRunningError, module: __MODULE__, name: pool

          :exit, {reason, _} ->
            raise Hotpath.Compute.Error, reason: {:pool_down, reason}, pool: pool
        end
    end
  end

  # The process to talk to for `pool`, or `:not_running`; raises ArgumentError for what cannot
  # name a pool and for a local process that is not one.
  defp resolve(pool, where) do
    target =
      case pool do
        pid when is_pid(pid) -> pid
        name when is_atom(name) and name not in [nil, true, false] -> Process.whereis(name)
        {:global, _} -> GenServer.whereis(pool)
        {:via, module, _} when is_atom(module) -> via_whereis(pool)
        # A pool on another node needs distribution; without it no pool runs there.
        {name, node} when is_atom(name) and node == node() -> Process.whereis(name)
        {name, node} when is_atom(name) and is_atom(node) -> if Node.alive?(), do: pool
        other -> raise ArgumentError, not_a_pool_message(other, where)
      end

    case target do
      nil ->
        :not_running

      pid when is_pid(pid) and node(pid) == node() ->
        cond do
          Native.compute_is_pool(pid) -> pid
          Process.alive?(pid) -> raise ArgumentError, not_a_pool_process(pool, where)
          true -> :not_running
        end

      remote ->
        remote
    end
  end

  defp via_whereis(pool) do
    GenServer.whereis(pool)
  rescue
    e in [UndefinedFunctionError, FunctionClauseError] ->
      raise ArgumentError,
            "#{inspect(pool)} cannot name a pool: #{Exception.message(e)}"
  end

  defp not_a_pool_message(other, where) do
    "Hotpath.Compute.#{where} needs a pool: its name (an atom, {:global, term}, " <>
      "{:via, module, term} or {atom, node}) or pid, got: #{inspect(other, limit: 10)}"
  end

  defp not_a_pool_process(pool, where) do
    "Hotpath.Compute.#{where}: #{inspect(pool)} is a process, but not a Hotpath.Compute pool"
  end

  # ---- kernels callable without a pool ------------------------------------------------

  @doc """
  A synthetic chunked kernel: burns CPU on a dirty scheduler for `steps` steps of
  `:step_us` microseconds (default 10 000), then returns `{:ok, checksum}`.

  It exists to test and benchmark cancellation, concurrency bounds and scheduler
  responsiveness. Options:

  #{Options.docs(:spin)}

  Returns `{:error, :cancelled}` if the job was cancelled.

      iex> {:ok, _checksum} = Hotpath.Compute.spin(2, step_us: 100)
  """
  @spec spin(non_neg_integer(), keyword()) ::
          {:ok, non_neg_integer()} | {:error, :cancelled | {:panic, String.t()}}
  def spin(steps, opts \\ []) do
    if not (is_integer(steps) and steps >= 0) do
      raise ArgumentError, "steps must be a non-negative integer, got: #{inspect(steps)}"
    end

    opts = Options.spin!(opts)
    step_us = opts[:step_us]
    panic_at = opts[:panic_at]

    job = Native.compute_job_new({:spin, steps, step_us, panic_at})

    if opts[:notify], do: send(opts[:notify], {:hotpath_compute_job, job})

    spin_loop(job)
  end

  defp spin_loop(job) do
    case Native.compute_spin_step(job) do
      :more -> spin_loop(job)
      result -> result
    end
  end

  @doc """
  Progress of a native job: `%{state: :running | :done | :cancelled | :failed, busy: boolean,
  steps: n, bytes: n}` (`busy`: a step is running now; `steps`: dirty calls made; `bytes`:
  input hashed, for digests). Reads counters only; never waits for a running step. Once a job
  reads `state: :cancelled, busy: false`, its counters are final: every later step refuses.
  """
  @spec job_info(native_job()) :: %{
          state: atom(),
          busy: boolean(),
          steps: non_neg_integer(),
          bytes: non_neg_integer()
        }
  def job_info(job), do: Native.compute_job_info(job)

  @doc """
  Cancels a native job: its running step returns within a fraction of a millisecond and
  every later step returns `{:error, :cancelled}`. Returns `true` if this call cancelled it.
  """
  @spec cancel(native_job()) :: boolean()
  def cancel(job), do: Native.compute_job_cancel(job)
end
