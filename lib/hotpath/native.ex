defmodule Hotpath.Native do
  @moduledoc false
  # NIF stubs and the loader. The library is installed by the `:hotpath_cargo` compiler (see
  # mix.exs: precompiled or built with cargo) into `priv/native/hotpath_nif.so` of the app's
  # build path.

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
    `mix compile` (the :hotpath_cargo compiler) installs it into priv/native/hotpath_nif.so of
    the :hotpath build path: precompiled when Hotpath is a dependency on a listed target, else
    built with cargo (Rust 1.91+). Run `mix compile` (or `mix deps.compile hotpath --force`
    when Hotpath is a dependency), or set HOTPATH_NIF_PATH to a prebuilt library before
    compiling.\
    """
  end

  defp format_reason(:no_priv_dir), do: "the :hotpath application is not on the code path"
  defp format_reason({:load_failed, text}), do: "load failed (#{text})"
  defp format_reason({reason, text}) when is_list(text), do: "#{reason} (#{text})"
  defp format_reason(other), do: inspect(other)

  defp err, do: :erlang.nif_error(:nif_not_loaded)

  # system.rs
  def noop, do: err()
  def noop_hit_shape(_name, _key, _cost), do: err()
  def noop_histogram_record_shape(_histogram, _value), do: err()
  def noop_metrics_record_shape(_instance, _name, _value, _tags), do: err()
  def native_info, do: err()
  def debug_fail(_kind), do: err()
  def debug_unguarded_panic, do: err()

  # limiter.rs
  def limiter_validate(_algorithm, _limit, _period, _burst), do: err()

  def limiter_new(_algorithm, _limit, _period, _burst, _max_keys, _max_bytes, _on_full_allow),
    do: err()

  def limiter_publish(_limiter, _name, _report_denies), do: err()
  def limiter_unpublish(_limiter, _name), do: err()
  def limiter_hit(_name, _key, _cost), do: err()
  def limiter_call(_limiter, _op, _key, _cost, _now, _policy), do: err()
  def limiter_reset(_limiter, _key), do: err()
  def limiter_check_key(_key), do: err()
  def limiter_clear(_limiter), do: err()
  def limiter_now(_limiter), do: err()
  def limiter_stats(_limiter), do: err()
  def limiter_sweep(_limiter, _from, _now, _budget_us), do: err()

  # compute.rs
  def compute_job_new(_kind), do: err()
  def compute_job_cancel(_job), do: err()
  def compute_job_info(_job), do: err()
  def compute_spin_step(_job), do: err()
  def compute_digest_update(_job, _data, _offset), do: err()
  def compute_digest_finish(_job), do: err()
  def digest_small(_algorithm, _data), do: err()
  def compute_native_load(_reset), do: err()
  def compute_native_watch(_pid, _waiter), do: err()
  def compute_pool_register, do: err()
  def compute_is_pool(_pid), do: err()

  # password.rs
  def password_hash(_password, _salt, _m_cost, _t_cost, _p_cost, _hash_len), do: err()
  def password_verify(_password, _phc, _max_m_cost, _max_t_cost, _max_p_cost), do: err()
  def password_info(_phc), do: err()
  def password_raw(_password, _salt, _secret, _data, _costs), do: err()

  # Benchmark baselines (normal-scheduler versions of dirty kernels; never used by the library)
  def bench_normal_digest(_algorithm, _data), do: err()
  def bench_normal_password_hash(_password, _salt, _m_cost, _t_cost, _p_cost), do: err()

  # histogram.rs
  def histogram_new(_options), do: err()
  def histogram_new_dirty(_options), do: err()
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

  # metrics_cluster.rs
  def metrics_export(_registry), do: err()
  def metrics_import(_registry, _exported, _node), do: err()
  def metrics_prometheus_cluster(_registry, _nodes), do: err()
end
