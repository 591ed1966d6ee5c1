defmodule Hotpath.Telemetry do
  @moduledoc """
  Every `:telemetry` event Hotpath emits.

  Hotpath does not depend on `:telemetry`: events are emitted when the host application has
  it (it is looked for once, at the first event, and the answer is kept). Without it nothing
  is built or sent. Durations are in `:native` time units, as `:telemetry.span/3` gives them;
  convert them with `System.convert_time_unit/3`.

  ## Rate limiter

    * `[:hotpath, :rate_limiter, :sweep]` - after each sweep pass of a limiter's owner.
      * Measurements: `:duration` (native time), `:removed` (keys removed), `:keys` (keys
        left), `:full_events` (new keys refused or allowed by a full table, since start).
      * Metadata: `:limiter` (the name).
    * `[:hotpath, :rate_limiter, :deny]` - for each denied `Hotpath.RateLimiter.hit/4`, only
      for limiters started with `telemetry_denies: true`.
      * Measurements: `:cost`.
      * Metadata: `:limiter`, `:key`, `:retry_after` (ms or `:infinity`), `:reset_after` (ms);
        for a limiter of several policies also `:violated` (the refusing policies, or
        `:banned` or `:full`).
    * `[:hotpath, :rate_limiter, :ban]` - when a key of a limiter with `:ban` is banned:
      by its denials (the one that reached `:after`) or by `Hotpath.RateLimiter.ban/3`. In
      cluster mode it is emitted on the node that decided (the key's owner).
      * Measurements: `:duration` (the ban's length in ms), `:offences` (offences remembered,
        this one included; `0` for a ban by `ban/3`).
      * Metadata: `:limiter`, `:key`, `:reason` (`:denials` or `:manual`).
    * `[:hotpath, :rate_limiter, :cluster_fallback]` - for each decision of a
      `cluster: :owner` limiter whose owning node did not answer.
      * Measurements: `:count` (1).
      * Metadata: `:limiter`, `:key`, `:owner` (the node), `:reason` (`:timeout`,
        `:noconnection`, `:not_running` or another term), `:fallback` (`:local_share`,
        `:allow` or `:deny`; `:local` for `ban/3`, `unban/2` and `banned?/2`, which then act
        on this node's table).

  ## Compute

    * `[:hotpath, :compute, :job, :start]` - a job left the queue and started.
      * Measurements: `:system_time`, `:monotonic_time`, `:queue_time`, `:running` (jobs
        running, this one included), `:queued`, `:saturation` (`running / max_concurrency`).
      * Metadata: `:pool`, `:max_concurrency`, `:max_queue`.
    * `[:hotpath, :compute, :job, :stop]` - a job returned.
      * Measurements: `:duration` (run time), `:queue_time`, `:monotonic_time`.
      * Metadata: `:pool`, `:status` (`:ok` or `:error`), `:error` (the reason, or `nil`).
    * `[:hotpath, :compute, :job, :exception]` - a job panicked, raised, threw, exited, or
      was cancelled (timeout, caller gone) while running.
      * Measurements: `:duration`, `:queue_time`, `:monotonic_time`.
      * Metadata: `:pool`, `:kind` (`:panic`, `:error`, `:throw`, `:exit` or
        `:cancelled`), `:reason`.
    * `[:hotpath, :compute, :pool, :overloaded]` - a job was refused because the queue was
      full.
      * Measurements: `:running`, `:queued`.
      * Metadata: `:pool`, `:max_concurrency`, `:max_queue`.

  ## Metrics

  `Hotpath.Metrics` emits no event: it is a reporter, and attaches one handler per event of
  its definitions (`Hotpath.Metrics.Handler`) through the same `:telemetry`.

  A crashing handler is `:telemetry`'s business (it detaches it): emitting never raises in
  Hotpath's processes.
  """

  @compile {:no_warn_undefined, :telemetry}

  @key {__MODULE__, :module}

  @typedoc "An event name, its measurements and its metadata."
  @type event :: {[atom()], map(), map()}

  @doc false
  # The one way Hotpath emits an event. `:telemetry` is looked for at run time only, once (never
  # at compile time: Elixir 1.15+ compiles a dependency with only the code paths of what it
  # declares, so a compile-time check would find nothing); the answer lives in
  # :persistent_term.
  @spec emit(event()) :: :ok
  def emit({name, measurements, metadata}) do
    case module() do
      nil -> :ok
      module -> execute(module, name, measurements, metadata)
    end
  end

  defp execute(module, name, measurements, metadata) do
    module.execute(name, measurements, metadata)
    :ok
  rescue
    _ -> :ok
  end

  @doc false
  # The module events go through and handlers are attached with: `:telemetry` when it is
  # available, else `nil`.
  @spec module() :: module() | nil
  def module do
    case :persistent_term.get(@key, :unknown) do
      :unknown ->
        module = if Code.ensure_loaded?(:telemetry), do: :telemetry, else: nil
        :persistent_term.put(@key, module)
        module

      module ->
        module
    end
  end

  @doc false
  # The test seam: a stand-in with `:telemetry`'s `execute/3`, `attach/4`, `detach/1` and
  # `list_handlers/1` (the real package cannot be installed in CI). `nil` emits nothing;
  # `:unknown` looks for `:telemetry` again at the next event.
  @spec put_module(module() | nil | :unknown) :: :ok
  def put_module(module) when is_atom(module), do: :persistent_term.put(@key, module)
end
