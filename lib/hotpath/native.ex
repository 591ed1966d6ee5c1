defmodule Hotpath.Native do
  @moduledoc false
  # NIF stubs and the loader. The library is installed by the `:hotpath_cargo` compiler (see
  # mix.exs: precompiled or built with cargo) into `priv/native/hotpath_nif.so` of the app's
  # build path.
  #
  # Every NIF is a `#[rustler::nif]` but `limiter_hit` (registered without rustler's per-call
  # argument vector, see native/hotpath_nif/src/fast_nif.rs); every resource a
  # `#[rustler::resource_impl]` type passed as a `ResourceArc` term. The stubs below the `bench` heading exist only in a library built
  # with the crate's `bench` feature (Hotpath's MIX_ENV=test build, `make nif`, `make bench`);
  # in the package they stay stubs and raise.
  #
  # ## What a NIF returns (the one convention)
  #
  # A NIF answers in exactly one of four ways:
  #
  #   1. Its value: what the caller asked for (`:ok`, a decision tuple, a map, a resource).
  #   2. An expected failure: `{:error, reason}` (`{:error, {:malformed | :incompatible,
  #      message}}`, `{:error, :cancelled}`, `{:error, {:panic, message}}`), documented in
  #      the public function that returns it.
  #   3. A raise: `ArgumentError` for bad arguments (rustler's own decode failures included),
  #      `Hotpath.PanicError` for a panic inside `guard`, `ErlangError{original:
  #      :nif_panicked}` for one outside it.
  #   4. A control answer: a bare atom, or `{atom, payload}` with an atom other than `:ok` and
  #      `:error`, telling the Elixir caller what to do next. It is matched at the call site
  #      and never reaches a user. The complete list:
  #
  #      | answer | NIFs | the caller then |
  #      |---|---|---|
  #      | `:unpublished` | `limiter_hit` | nothing is published under the name: a cluster limiter (`Cluster.hit/3`) or an unknown one (raises) |
  #      | `{:report, decision}` | `limiter_hit`, `limiter_call` (several policies or bans) | emits the deny telemetry event, returns `decision` |
  #      | `{:ban, answer, ms, offences}` | `limiter_hit`, `limiter_call` (bans) | emits the ban telemetry event, then handles `answer` |
  #      | `:dirty` | `histogram_new`, `histogram_read`, `histogram_to_binary`, `histogram_from_binary` | calls the `_dirty` twin (too large for a normal scheduler) |
  #      | `:more`, `{:more, offset}` | `compute_spin_step`, `compute_digest_update` | calls again (the next chunk) |
  #      | `:convert_tags` | `metrics_record*`, `metrics_handle` | converts the tag values to strings and retries once |
  #      | `:unknown_instance`, `:unknown_metric`, `:bad_value`, `:missing_tag`, `:label_too_long` | `metrics_record*`, `metrics_handle`, `metrics_record_handle` | counts a dropped event (handler) or raises/returns the documented error |
  #
  # Going forward: a new special case is a control answer of this form, added to this table,
  # encoded by the NIF as a plain atom or tuple (not through `rustler::Error::Atom`, which
  # looks like an error but is a plain return), and never a new shape.

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
  def native_info, do: err()

  # limiter.rs
  def limiter_validate(_algorithm, _limit, _period, _burst), do: err()

  def limiter_new(_algorithm, _limit, _period, _burst, _max_keys, _max_bytes, _on_full_allow),
    do: err()

  def limiter_validate_rules(_policies, _ban), do: err()

  def limiter_new_multi(_policies, _ban, _max_keys, _max_bytes, _on_full_allow, _plain),
    do: err()

  def limiter_ban(_limiter, _op, _key, _now), do: err()
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
  def metrics_record_exemplar(_registry, _index, _value, _tags, _labels), do: err()
  def metrics_record_named(_instance, _name, _value, _tags), do: err()
  def metrics_publish(_registry, _instance), do: err()
  def metrics_handle(_target, _name, _tags), do: err()
  def metrics_record_handle(_handle, _value), do: err()
  def metrics_unpublish(_registry, _instance), do: err()
  def metrics_drop(_registry, _index), do: err()
  def metrics_prometheus(_registry, _format), do: err()
  def metrics_snapshot(_registry), do: err()
  def metrics_prune(_registry), do: err()
  def metrics_info(_registry), do: err()

  # metrics_cluster.rs
  def metrics_export(_registry), do: err()
  def metrics_import(_registry, _exported, _node), do: err()
  def metrics_prometheus_cluster(_registry, _nodes, _format), do: err()

  # bench.rs, only with the `bench` cargo feature: benchmark floors and baselines, the plain
  # sides of the A/B rows, and the probes of the error conventions. Never used by the library.
  def noop_hit_shape(_name, _key, _cost), do: err()
  def noop_histogram_record_shape(_histogram, _value), do: err()
  def noop_metrics_record_shape(_instance, _name, _value, _tags), do: err()
  def debug_fail(_kind), do: err()
  def debug_unguarded_panic, do: err()
  def bench_normal_digest(_algorithm, _data), do: err()
  def bench_normal_password_hash(_password, _salt, _m_cost, _t_cost, _p_cost), do: err()
  def bench_limiter_hit_instant(_name, _key, _cost), do: err()
  def bench_limiter_hit_rustler_nif(_name, _key, _cost), do: err()
  def bench_key_layout(_n, _long), do: err()
  # metrics/mod.rs (`bench` module): the A/B switches of one registry.
  def bench_metrics_variant(_registry, _bits), do: err()
end
