defmodule Hotpath do
  @moduledoc """
  Rust-powered hot paths for Phoenix and OTP applications.

  Hotpath keeps its data structures and hot loops in Rust NIFs and its lifecycle, options and
  supervision in Elixir. No process is started by the library itself: every instance is a
  child you add to your own supervision tree.

  ## Errors

  Every public function follows the same conventions:

    * an invalid argument raises `ArgumentError` with a message naming the problem (options
      are checked against one schema per function, whose docs are generated from it: the
      message names the option, what it accepts and what it got);
    * a limiter, metrics instance or compute pool that is not running raises
      `Hotpath.NotRunningError`;
    * an expected failure returns `{:error, reason}` with a documented `reason`
      (bang variants raise instead);
    * a panic in native code raises `Hotpath.PanicError`; the VM is never taken down.

  ## Telemetry and introspection

  `Hotpath.Telemetry` lists every `:telemetry` event Hotpath emits (when the host application
  has `:telemetry`). `info/1` of a limiter, a metrics instance, a compute pool or a histogram
  answers a map of counters; native memory, where there is some, is `:memory_bytes`.

  ## Building

  `mix compile` builds the native library with cargo (Rust 1.91 or newer). Set
  `HOTPATH_NIF_PATH` to a prebuilt `hotpath_nif` library to skip the build.
  """

  @typedoc "Versions and profile of the loaded native library."
  @type native_info :: %{
          nif_version: String.t(),
          core_version: String.t(),
          nif_crate_version: String.t(),
          profile: :release | :debug
        }

  @doc """
  Returns the versions and build profile of the loaded native library.

      iex> %{nif_version: "2.16", profile: profile} = Hotpath.native_info()
      iex> profile in [:release, :debug]
      true
  """
  @spec native_info() :: native_info()
  def native_info, do: Hotpath.Native.native_info()

  @doc """
  Returns `true` when the native library is loaded, `false` when it could not be (the reason
  was printed when loading failed: see `Hotpath.Native`'s message on standard error).

      iex> Hotpath.loaded?()
      true
  """
  @spec loaded?() :: boolean()
  def loaded? do
    # A failed `@on_load` leaves Hotpath.Native unloaded, so calling it would raise
    # UndefinedFunctionError: ask the code server first.
    Code.ensure_loaded?(Hotpath.Native) and Hotpath.Native.noop() == :ok
  rescue
    ErlangError -> false
  end
end
