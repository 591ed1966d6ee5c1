defmodule Hotpath.RateLimiter.Options do
  @moduledoc false
  # Validation of `Hotpath.RateLimiter.start_link/1` options. Ranges of the policy are
  # checked by the native core (one source of truth), types and choices here.

  @algorithms [:gcra, :token_bucket, :fixed_window, :sliding_window]

  @specs [
    name: {"an atom naming the limiter (required)", :required},
    algorithm: {"one of #{Enum.map_join(@algorithms, ", ", &inspect/1)} (default :gcra)", :gcra},
    limit: {"requests per period, a positive integer up to 2^32 - 1 (required)", :required},
    period:
      {"the period in milliseconds, a positive integer up to 100 days (required)", :required},
    burst:
      {"requests admitted at once for :gcra and :token_bucket, a positive integer " <>
         "(default: limit)", nil},
    max_keys:
      {"the most keys stored at once, a positive integer up to 2^32 (default 1_000_000)",
       1_000_000},
    max_bytes:
      {"the most bytes of key data stored outside the table's slots (the bytes of keys " <>
         "longer than 14 bytes: binaries, or other terms' external format), a non-negative " <>
         "integer up to 2^48 or `:infinity` (default: 256 per key of `:max_keys`, 256 MiB " <>
         "for the default). A new key that does not fit is answered as by a full table " <>
         "(see `:on_full`); see \"Memory\"", nil},
    on_full: {":deny or :allow: what a full table answers for a new key (default :deny)", :deny},
    sweep_every:
      {"milliseconds between sweeps of expired keys, a positive integer up to " <>
         "4_294_967_295 (about 49 days) or :infinity (default 30_000)", 30_000},
    telemetry_denies:
      {"emit [:hotpath, :rate_limiter, :deny] for every denied hit (default false)", false},
    cluster:
      {"`nil` (default: this node only), `:owner` (every key decided on one owning node of " <>
         "the cluster) or `:local_share` (each node enforces its share of the limit); see " <>
         "\"Cluster mode\"", nil},
    cluster_timeout:
      {"with `cluster: :owner`, milliseconds to wait for the owner's answer, a positive " <>
         "integer up to 4_294_967_295 (default 100)", nil},
    cluster_fallback:
      {"with `cluster: :owner`, the answer when the owner does not answer in time: " <>
         "`:local_share` (decide here with this node's share of the limit, the default), " <>
         "`:allow` or `:deny`", nil}
  ]

  @cluster_defaults [cluster_timeout: 100, cluster_fallback: :local_share]
  @cluster_defaults_map Map.new(@cluster_defaults)

  @cluster_modes [nil, :owner, :local_share]
  @fallbacks [:local_share, :allow, :deny]

  @keys Keyword.keys(@specs)

  # Process.send_after/3 and :erpc take at most 2^32 - 1 ms.
  @max_timer_ms 4_294_967_295
  @max_max_keys Bitwise.bsl(1, 32)
  @max_max_bytes Bitwise.bsl(1, 48)
  @bytes_per_key 256
  # A cluster limiter's internal names (`hotpath_cluster:` + name) must be atoms too.
  @max_cluster_name 255 - byte_size("hotpath_cluster:")

  @doc false
  def docs do
    Enum.map_join(@specs, "\n", fn {key, {doc, _}} -> "  * `#{inspect(key)}` - #{doc}" end)
  end

  @doc false
  def validate!(opts) do
    Hotpath.Options.validate_keys!(opts, @keys, "Hotpath.RateLimiter")

    opts =
      Enum.map(@specs, fn {key, {_doc, default}} ->
        case Keyword.fetch(opts, key) do
          {:ok, value} ->
            {key, check!(key, value)}

          :error when default == :required ->
            raise ArgumentError, "missing required option #{inspect(key)}"

          :error ->
            {key, default}
        end
      end)

    :ok =
      Hotpath.Native.limiter_validate(opts[:algorithm], opts[:limit], opts[:period], opts[:burst])

    opts = Keyword.update!(opts, :max_bytes, &(&1 || opts[:max_keys] * @bytes_per_key))

    if opts[:cluster] && String.length(Atom.to_string(opts[:name])) > @max_cluster_name do
      raise ArgumentError,
            "invalid :name for a cluster limiter: #{inspect(opts[:name])}; expected an atom " <>
              "of at most #{@max_cluster_name} characters"
    end

    if opts[:cluster] && not pg_monitor?() do
      raise ArgumentError,
            "cluster: #{inspect(opts[:cluster])} needs OTP 25.1 or newer (:pg.monitor/2), " <>
              "this is OTP #{System.otp_release()}"
    end

    cluster_defaults!(opts)
  end

  # The options of `cluster: :owner` get their defaults only with it (so validating twice,
  # as child_spec/1 then start_link/1 do, gives the same result).
  defp cluster_defaults!(opts) do
    case {opts[:cluster], Enum.reject(Keyword.keys(@cluster_defaults), &(opts[&1] == nil))} do
      {:owner, _given} ->
        Enum.map(opts, fn
          {key, nil} when is_map_key(@cluster_defaults_map, key) ->
            {key, @cluster_defaults_map[key]}

          option ->
            option
        end)

      {_mode, []} ->
        opts

      {mode, keys} ->
        raise ArgumentError,
              "#{Enum.map_join(keys, " and ", &inspect/1)} only apply with cluster: :owner, " <>
                "got cluster: #{inspect(mode)}"
    end
  end

  defp pg_monitor?, do: Code.ensure_loaded?(:pg) and function_exported?(:pg, :monitor, 2)

  defp check!(:name, name) when is_atom(name) and name not in [nil, true, false], do: name
  defp check!(:algorithm, algorithm) when algorithm in @algorithms, do: algorithm
  defp check!(key, n) when key in [:limit, :period] and is_integer(n) and n > 0, do: n

  defp check!(:max_keys, n) when is_integer(n) and n > 0 and n <= @max_max_keys, do: n
  defp check!(:max_bytes, nil), do: nil
  defp check!(:max_bytes, :infinity), do: :infinity
  defp check!(:max_bytes, n) when is_integer(n) and n >= 0 and n <= @max_max_bytes, do: n
  defp check!(:burst, nil), do: nil
  defp check!(:burst, n) when is_integer(n) and n > 0, do: n
  defp check!(:on_full, on_full) when on_full in [:deny, :allow], do: on_full
  defp check!(:sweep_every, :infinity), do: :infinity
  defp check!(:sweep_every, n) when is_integer(n) and n > 0 and n <= @max_timer_ms, do: n
  defp check!(:telemetry_denies, flag) when is_boolean(flag), do: flag
  defp check!(:cluster, mode) when mode in @cluster_modes, do: mode
  defp check!(key, nil) when key in [:cluster_timeout, :cluster_fallback], do: nil

  defp check!(:cluster_timeout, ms) when is_integer(ms) and ms > 0 and ms <= @max_timer_ms,
    do: ms

  defp check!(:cluster_fallback, fallback) when fallback in @fallbacks, do: fallback

  defp check!(key, value) do
    {doc, _} = Keyword.fetch!(@specs, key)
    raise ArgumentError, "invalid #{inspect(key)}: #{inspect(value)}; expected #{doc}"
  end

  @doc "The options that shape the native table: equal ones let a restarted owner reuse it."
  def table_options(opts),
    do: Keyword.take(opts, [:algorithm, :limit, :period, :burst, :max_keys, :max_bytes, :on_full])
end
