defmodule Hotpath.Native do
  @moduledoc false
  # NIF stubs and the loader. The library is built by the `:hotpath_cargo` compiler (see
  # mix.exs) into `priv/native/hotpath_nif.so` of the app's build path.

  @on_load :load_nif

  @doc false
  def load_nif do
    # rustler's NIF entry has no upgrade callback: purge any old code first so a reload does
    # not fail with {:error, {:upgrade, _}}.
    :code.purge(__MODULE__)

    with {:ok, path} <- library_path(),
         :ok <- :erlang.load_nif(path, 0) do
      :ok
    else
      {:error, reason} ->
        message = load_error_message(reason)
        IO.puts(:stderr, message)
        {:error, message}
    end
  end

  defp library_path do
    case :code.priv_dir(:hotpath) do
      {:error, :bad_name} -> {:error, :no_priv_dir}
      priv -> {:ok, :filename.join(priv, ~c"native/hotpath_nif")}
    end
  end

  @doc false
  def load_error_message(reason) do
    """
    [hotpath] could not load the native library hotpath_nif: #{format_reason(reason)}.
    It is built by `mix compile` (the :hotpath_cargo compiler, which needs cargo with Rust 1.91+)
    into priv/native/hotpath_nif.so of the :hotpath build path. Run `mix compile` (or
    `mix deps.compile hotpath --force` when Hotpath is a dependency), or set HOTPATH_NIF_PATH
    to a prebuilt library before compiling.\
    """
  end

  defp format_reason(:no_priv_dir), do: "the :hotpath application is not on the code path"
  defp format_reason({:load_failed, text}), do: "load failed (#{text})"
  defp format_reason({reason, text}) when is_list(text), do: "#{reason} (#{text})"
  defp format_reason(other), do: inspect(other)

  defp err, do: :erlang.nif_error(:nif_not_loaded)

  # system.rs
  def noop, do: err()
  def native_info, do: err()
  def debug_fail(_kind), do: err()
  def debug_unguarded_panic, do: err()

  # histogram.rs
  def histogram_new(_options), do: err()
  def histogram_record(_h, _value), do: err()
  def histogram_record_n(_h, _value, _count), do: err()
  def histogram_read(_h, _view, _quantiles), do: err()
  def histogram_read_dirty(_h, _view, _quantiles), do: err()
  def histogram_to_binary(_h), do: err()
  def histogram_to_binary_dirty(_h), do: err()
  def histogram_from_binary(_binary), do: err()
  def histogram_from_binary_dirty(_binary), do: err()
  def histogram_merge(_into, _other), do: err()
  def histogram_reset(_h), do: err()
  def histogram_info(_h), do: err()
  def histogram_advance(_h, _ms), do: err()

  # metrics.rs
  def metrics_new(_specs), do: err()
  def metrics_record(_registry, _name, _value, _tags), do: err()
  def metrics_record_index(_registry, _index, _value, _tags), do: err()
  def metrics_record_named(_instance, _name, _value, _tags), do: err()
  def metrics_publish(_registry, _instance), do: err()
  def metrics_handle(_target, _name, _tags), do: err()
  def metrics_record_handle(_handle, _value), do: err()
  def metrics_unpublish(_registry, _instance), do: err()
  def metrics_drop(_registry, _index), do: err()
  def metrics_prometheus(_registry), do: err()
  def metrics_snapshot(_registry), do: err()
  def metrics_prune(_registry), do: err()
  def metrics_info(_registry), do: err()
end
