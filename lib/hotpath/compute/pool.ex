defmodule Hotpath.Compute.Pool do
  @moduledoc false
  # The pool process of `Hotpath.Compute`: its slots, its queue, and the jobs it runs (each
  # in a linked process, see `Hotpath.Compute.Job`). Callers talk to it with plain messages
  # (`Hotpath.Compute.run/3`): `{:"$hotpath_run", ref, caller, job, submitted_at}` and
  # `{:"$hotpath_cancel", ref}`; answers go to the caller's monitor alias `ref`.
  use GenServer

  alias Hotpath.Compute.{Events, Job}
  alias Hotpath.Native

  @impl true
  def init(config) do
    # Jobs are linked: a crashing pool takes them (and their native work) down with it, and
    # trapping exits turns their ends into messages instead of killing the pool.
    Process.flag(:trap_exit, true)

    {:ok,
     Map.merge(config, %{
       # registers this process as a pool (lets run/3 and info/1 tell pools from others)
       mark: Native.compute_pool_register(),
       # exited worker pid => job, whose native work still runs (the slot stays taken)
       draining: %{},
       # worker pid => job
       running: %{},
       # job ref => worker pid | :queued
       refs: %{},
       # caller monitor ref => job ref
       callers: %{},
       queue: :queue.new(),
       queued: 0,
       started: 0,
       completed: 0,
       rejected: 0,
       cancelled: 0
     })}
  end

  @impl true
  def handle_call(:info, _from, state) do
    {:reply,
     %{
       running: map_size(state.running) + map_size(state.draining),
       draining: map_size(state.draining),
       queued: state.queued,
       max_concurrency: state.max_concurrency,
       max_queue: state.max_queue,
       started: state.started,
       completed: state.completed,
       rejected: state.rejected,
       cancelled: state.cancelled
     }, state}
  end

  # Nothing in this module sends other calls or casts: answer instead of crashing the pool.
  def handle_call(_other, _from, state), do: {:reply, {:error, :unknown_call}, state}

  @impl true
  def handle_cast(_other, state), do: {:noreply, state}

  @impl true
  def handle_info({:"$hotpath_run", ref, caller, job, submitted_at}, state) do
    cond do
      taken(state) < state.max_concurrency ->
        {:noreply, start_job(new_job(ref, caller, job, submitted_at), state)}

      state.queued < state.max_queue ->
        entry = new_job(ref, caller, job, submitted_at)

        {:noreply,
         %{
           state
           | queue: :queue.in(entry, state.queue),
             queued: state.queued + 1,
             refs: Map.put(state.refs, ref, {:queued, entry.mon}),
             callers: Map.put(state.callers, entry.mon, ref)
         }}

      true ->
        send(ref, {ref, :overloaded})

        Events.emit(:overloaded, %{
          pool: state.name,
          running: taken(state),
          queued: state.queued,
          max_concurrency: state.max_concurrency,
          max_queue: state.max_queue
        })

        {:noreply, %{state | rejected: state.rejected + 1}}
    end
  end

  def handle_info({:"$hotpath_done", ref}, state) do
    # The job has its result: from now on its caller's exit or timeout cancels nothing. The
    # slot stays taken until the job process exits.
    case Map.get(state.refs, ref) do
      {:running, pid, _mon} -> {:noreply, forget(state, state.running[pid])}
      _ -> {:noreply, state}
    end
  end

  def handle_info({:"$hotpath_cancel", ref}, state) do
    {:noreply, cancel_job(state, ref, :timeout)}
  end

  def handle_info({:DOWN, mon, :process, _pid, _reason}, state) do
    case Map.fetch(state.callers, mon) do
      {:ok, ref} -> {:noreply, cancel_job(state, ref, :caller_down)}
      :error -> {:noreply, state}
    end
  end

  def handle_info({:EXIT, pid, reason}, state) do
    case Map.pop(state.running, pid) do
      {nil, _} ->
        {:noreply, state}

      {job, running} ->
        state = finish(forget(%{state | running: running}, job), job, reason)

        # A process killed inside a dirty NIF has exited, but its native work runs on until
        # the NIF returns: keep the slot until the native side says it has ended.
        if Native.compute_native_watch(pid, self()) do
          {:noreply, %{state | draining: Map.put(state.draining, pid, job)}}
        else
          {:noreply, dispatch(state)}
        end
    end
  end

  def handle_info({:hotpath_native_idle, pid}, state) do
    case Map.pop(state.draining, pid) do
      {nil, _} -> {:noreply, state}
      {_job, draining} -> {:noreply, dispatch(%{state | draining: draining})}
    end
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    # A :normal or :shutdown exit signal does not kill a linked process that is not trapping
    # exits: kill the jobs so their native work is cancelled too.
    Enum.each(Map.keys(state.running), &Process.exit(&1, :kill))
  end

  defp taken(state), do: map_size(state.running) + map_size(state.draining)

  defp new_job(ref, caller, job, submitted_at) do
    %{
      ref: ref,
      mon: Process.monitor(caller),
      job: job,
      submitted_at: submitted_at,
      cancel_reason: nil
    }
  end

  defp forget(state, job) do
    Process.demonitor(job.mon, [:flush])
    %{state | refs: Map.delete(state.refs, job.ref), callers: Map.delete(state.callers, job.mon)}
  end

  defp start_job(job, state) do
    now = System.monotonic_time()
    queue_time = now - job.submitted_at

    context = %{
      owner: self(),
      pool: state.name,
      queue_time: queue_time,
      start: %{
        pool: state.name,
        monotonic_time: now,
        queue_time: queue_time,
        running: taken(state) + 1,
        queued: state.queued,
        max_concurrency: state.max_concurrency,
        max_queue: state.max_queue
      }
    }

    ref = job.ref
    fun = job.job
    pid = spawn_link(fn -> Job.run(ref, fun, context) end)
    job = Map.merge(job, %{started_at: now, queue_time: queue_time})

    %{
      state
      | running: Map.put(state.running, pid, job),
        refs: Map.put(state.refs, ref, {:running, pid, job.mon}),
        callers: Map.put(state.callers, job.mon, ref),
        started: state.started + 1
    }
  end

  defp dispatch(state) do
    with true <- taken(state) < state.max_concurrency,
         {{:value, job}, queue} <- :queue.out(state.queue) do
      dispatch(start_job(job, %{state | queue: queue, queued: state.queued - 1}))
    else
      _ -> state
    end
  end

  defp cancel_job(state, ref, reason) do
    case Map.get(state.refs, ref) do
      nil ->
        state

      {:queued, _mon} ->
        {[job], kept} = state.queue |> :queue.to_list() |> Enum.split_with(&(&1.ref == ref))
        state = forget(state, job)

        %{
          state
          | queue: :queue.from_list(kept),
            queued: state.queued - 1,
            cancelled: state.cancelled + 1
        }

      {:running, pid, _mon} ->
        # The EXIT message frees the slot; the native resources' monitors of the killed
        # process cancel its native work.
        Process.exit(pid, :kill)
        job = %{state.running[pid] | cancel_reason: reason}
        state = forget(state, job)
        %{state | running: Map.put(state.running, pid, job), cancelled: state.cancelled + 1}
    end
  end

  defp finish(state, job, reason) do
    case {reason, job.cancel_reason} do
      {:normal, nil} ->
        %{state | completed: state.completed + 1}

      {_, cancel_reason} ->
        {kind, why} = if cancel_reason, do: {:cancelled, cancel_reason}, else: {:exit, reason}

        # A job killed by someone else: tell its caller. A cancelled job's caller is gone or
        # has timed out (its alias is inactive, so a message would be dropped anyway).
        if kind == :exit, do: send(job.ref, {job.ref, {:result, {:error, {:exit, reason}}}})

        Events.emit(:exception, %{
          pool: state.name,
          monotonic_time: System.monotonic_time(),
          started_at: job.started_at,
          queue_time: job.queue_time,
          kind: kind,
          reason: why
        })

        state
    end
  end
end
