defmodule Mix.Tasks.Hotpath.Demo do
  @shortdoc "Runs Hotpath's demo (for now: a health check of the native library)"
  @moduledoc """
  Runs Hotpath's demo.

      mix hotpath.demo

  For now it is a health check: it loads the native library, prints the versions of the
  runtime and of the library, and times the empty NIF call against a BIF call.
  """
  use Mix.Task

  @impl true
  def run(_args) do
    Mix.Task.run("app.start")

    info = Hotpath.native_info()

    Mix.shell().info("""
    Hotpath #{Application.spec(:hotpath, :vsn)} - native library loaded from #{:code.priv_dir(:hotpath)}
      Erlang/OTP #{System.otp_release()} (erts #{:erlang.system_info(:version)}), Elixir #{System.version()}
      schedulers: #{System.schedulers_online()} normal, #{:erlang.system_info(:dirty_cpu_schedulers_online)} dirty CPU
      hotpath_nif #{info.nif_crate_version} (core #{info.core_version}, NIF API #{info.nif_version}, #{info.profile} build)
    """)

    n = 1_000_000
    nif = per_call_ns(n, fn -> Hotpath.Native.noop() end)
    bif = per_call_ns(n, fn -> :erlang.phash2(:hotpath) end)

    Mix.shell().info(
      "  empty NIF call: #{format(nif)} ns, BIF call: #{format(bif)} ns (#{n} calls each)\nhealth check: ok"
    )
  end

  defp per_call_ns(n, fun) do
    loop(fun, 10_000)
    start = System.monotonic_time(:nanosecond)
    loop(fun, n)
    (System.monotonic_time(:nanosecond) - start) / n
  end

  defp loop(_fun, 0), do: :ok

  defp loop(fun, n) do
    fun.()
    loop(fun, n - 1)
  end

  defp format(ns), do: :erlang.float_to_binary(ns, decimals: 1)
end
