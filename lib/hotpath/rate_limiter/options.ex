defmodule Hotpath.RateLimiter.Options do
  @moduledoc false
  # Validation of `Hotpath.RateLimiter.start_link/1` options. Ranges of the policy are
  # checked by the native core (one source of truth), types and choices here.

  @algorithms [:gcra, :token_bucket, :fixed_window, :sliding_window]
  @cluster_modes [nil, :owner, :local_share]
  @fallbacks [:local_share, :allow, :deny]

  # Process.send_after/3 and :erpc take at most 2^32 - 1 ms.
  @max_timer_ms 4_294_967_295
  @max_max_keys Bitwise.bsl(1, 32)
  @max_max_bytes Bitwise.bsl(1, 48)
  @bytes_per_key 256
  # A cluster limiter's internal names (`hotpath_cluster:` + name) must be atoms too.
  @max_cluster_name 255 - byte_size("hotpath_cluster:")

  @schema [
    name: [type: :name, required: true, doc: "The name of the limiter"],
    algorithm: [type: {:in, @algorithms}, default: :gcra, doc: "The algorithm"],
    limit: [
      type: {:integer, 1, :infinity},
      required: true,
      doc: "Requests per period, up to 2^32 - 1"
    ],
    period: [
      type: {:integer, 1, :infinity},
      required: true,
      doc: "The period in milliseconds (at most 100 days)"
    ],
    burst: [
      type: {:or, [{:value, nil}, {:integer, 1, :infinity}]},
      default: nil,
      doc_default: "`nil`: the limit",
      doc: "Requests admitted at once for `:gcra` and `:token_bucket`, up to 2^32 - 1"
    ],
    max_keys: [
      type: {:integer, 1, @max_max_keys},
      default: 1_000_000,
      doc: "The most keys stored at once (up to 2^32)"
    ],
    max_bytes: [
      type: {:or, [{:value, nil}, {:value, :infinity}, {:integer, 0, @max_max_bytes}]},
      default: nil,
      doc_default: "`nil`: 256 per key of `:max_keys`, 256 MiB for the default",
      doc:
        "The most bytes of key data stored outside the table's slots (the bytes of keys " <>
          "longer than 14 bytes: binaries, or other terms' external format), up to 2^48. A " <>
          "new key that does not fit is answered as by a full table (see `:on_full`); see " <>
          "\"Memory\""
    ],
    on_full: [
      type: {:in, [:deny, :allow]},
      default: :deny,
      doc: "What a full table answers for a new key"
    ],
    sweep_every: [
      type: {:or, [{:integer, 1, @max_timer_ms}, {:value, :infinity}]},
      default: 30_000,
      doc: "Milliseconds between sweeps of expired keys (at most about 49 days)"
    ],
    telemetry_denies: [
      type: :boolean,
      default: false,
      doc: "Emit `[:hotpath, :rate_limiter, :deny]` for every denied hit"
    ],
    cluster: [
      type: {:in, @cluster_modes},
      default: nil,
      doc:
        "`nil`: this node only; `:owner`: every key decided on one owning node of the " <>
          "cluster; `:local_share`: each node enforces its share of the limit. See " <>
          "\"Cluster mode\""
    ],
    cluster_timeout: [
      type: {:or, [{:value, nil}, {:integer, 1, @max_timer_ms}]},
      default: nil,
      doc_default: "100 with `cluster: :owner`",
      doc: "With `cluster: :owner`, milliseconds to wait for the owner's answer"
    ],
    cluster_fallback: [
      type: {:or, [{:value, nil}, {:in, @fallbacks}]},
      default: nil,
      doc_default: "`:local_share` with `cluster: :owner`",
      doc:
        "With `cluster: :owner`, the answer when the owner does not answer in time: " <>
          "`:local_share` decides here with this node's share of the limit"
    ]
  ]

  @cluster_defaults [cluster_timeout: 100, cluster_fallback: :local_share]
  @cluster_defaults_map Map.new(@cluster_defaults)

  @doc false
  def docs, do: Hotpath.Options.docs(@schema)

  @doc false
  def validate!(opts) do
    opts = Hotpath.Options.validate!(opts, @schema, "Hotpath.RateLimiter")

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

  @doc "The options that shape the native table: equal ones let a restarted owner reuse it."
  def table_options(opts),
    do: Keyword.take(opts, [:algorithm, :limit, :period, :burst, :max_keys, :max_bytes, :on_full])
end
