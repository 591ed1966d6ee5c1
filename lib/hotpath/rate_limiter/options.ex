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

  # One policy: the options of a single-policy limiter, and of each of `:policies`.
  @policy_schema [
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
    ]
  ]
  @policy_keys Keyword.keys(@policy_schema)
  @max_policies 8
  @max_ban_ms 100 * 24 * 3600 * 1000

  @ban_schema [
    after: [
      type: {:integer, 1, 4_294_967_295},
      doc:
        "Denials within `:within` that start a ban (with `:within`; without both, only `ban/3` bans)"
    ],
    within: [
      type: {:integer, 1, @max_ban_ms},
      doc: "The window in milliseconds in which `:after` denials are counted"
    ],
    for: [
      type: {:integer, 1, @max_ban_ms},
      required: true,
      doc: "The length of a first ban in milliseconds (at most 100 days)"
    ],
    backoff: [
      type: {:custom, __MODULE__, :backoff, "a number in 1..1000"},
      default: 1,
      doc:
        "Each offence still remembered multiplies the next ban's length by this factor " <>
          "(offences are remembered until `:max` after a ban ends; with `1`, not at all)"
    ],
    max: [
      type: {:integer, 1, @max_ban_ms},
      doc_default: "64 times `:for`, at most 100 days",
      doc: "The longest ban, in milliseconds (at least `:for`)"
    ]
  ]

  @schema [name: [type: :name, required: true, doc: "The name of the limiter"]] ++
            @policy_schema ++
            [
              policies: [
                type:
                  {:custom, __MODULE__, :policies,
                   "a keyword list of 1 to #{@max_policies} policies, each `name: [algorithm:, " <>
                     "limit:, period:, burst:]`"},
                doc_default: "`nil`: one policy, from the options above",
                doc:
                  "Several named policies decided together, instead of `:algorithm`, `:limit`, " <>
                    "`:period` and `:burst`: a request is admitted only if every policy admits " <>
                    "it, and a denial charges none. See \"Several policies\""
              ],
              ban: [
                type:
                  {:custom, __MODULE__, :ban,
                   "a keyword list of :after, :within, :for (required), :backoff and :max"},
                doc_default: "`nil`: no bans",
                doc:
                  "Escalating bans (`:after`, `:within`, `:for`, `:backoff`, `:max`). See \"Bans\""
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

  # With `:policies`, the single policy's options are not required (and refused if given).
  @multi_schema Enum.map(@schema, fn
                  # nil: how validated options of several policies hold them (validating
                  # twice, as child_spec/1 then start_link/1 do, gives the same result).
                  {key, spec} when key in [:algorithm, :limit, :period] ->
                    {key,
                     spec
                     |> Keyword.delete(:required)
                     |> Keyword.update!(:type, &{:or, [{:value, nil}, &1]})}

                  other ->
                    other
                end)

  @cluster_defaults [cluster_timeout: 100, cluster_fallback: :local_share]
  @cluster_defaults_map Map.new(@cluster_defaults)

  @doc false
  def docs, do: Hotpath.Options.docs(@schema)

  @doc false
  def policy_docs, do: Hotpath.Options.docs(@policy_schema)

  @doc false
  def ban_docs, do: Hotpath.Options.docs(@ban_schema)

  @doc false
  def validate!(opts) do
    multi? = is_list(opts) and Keyword.keyword?(opts) and opts[:policies] != nil
    schema = if multi?, do: @multi_schema, else: @schema
    raw = opts
    opts = Hotpath.Options.validate!(opts, schema, "Hotpath.RateLimiter")

    opts =
      case opts[:policies] do
        nil ->
          :ok =
            Hotpath.Native.limiter_validate(
              opts[:algorithm],
              opts[:limit],
              opts[:period],
              opts[:burst]
            )

          opts

        _policies ->
          case Enum.filter(@policy_keys, &(Keyword.get(raw, &1) != nil)) do
            [] ->
              :ok

            keys ->
              raise ArgumentError,
                    "#{Enum.map_join(keys, ", ", &inspect/1)} cannot be given with :policies " <>
                      "(each policy has its own) (Hotpath.RateLimiter)"
          end

          # The single policy's keys stay out of a multi-policy config (nil in `info/1`).
          Enum.map(opts, fn
            {key, _} when key in [:algorithm, :limit, :period, :burst] -> {key, nil}
            option -> option
          end)
      end

    if opts[:policies] || opts[:ban] do
      :ok = Hotpath.Native.limiter_validate_rules(native_policies(opts), native_ban(opts))
    end

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
    do:
      Keyword.take(opts, [
        :algorithm,
        :limit,
        :period,
        :burst,
        :policies,
        :ban,
        :max_keys,
        :max_bytes,
        :on_full
      ])

  @doc """
  True when the limiter keeps cells (several policies, or bans) rather than plain slots.
  """
  def cells?(opts), do: opts[:policies] != nil or opts[:ban] != nil

  @doc "The policy names of validated options, in order (`[]` for a single policy)."
  def policy_names(opts), do: Keyword.keys(opts[:policies] || [])

  @doc """
  The policies as the NIF takes them: `[{name, algorithm, limit, period, burst}]` (a single
  policy is named after the limiter).
  """
  def native_policies(opts) do
    case opts[:policies] do
      nil ->
        [{opts[:name], opts[:algorithm], opts[:limit], opts[:period], opts[:burst]}]

      policies ->
        for {name, p} <- policies, do: {name, p[:algorithm], p[:limit], p[:period], p[:burst]}
    end
  end

  @doc "The ban rule as the NIF takes it: `nil` or `{after, within, for, backoff, max}`."
  def native_ban(opts) do
    case opts[:ban] do
      nil -> nil
      ban -> {ban[:after], ban[:within], ban[:for], ban[:backoff] * 1.0, ban[:max]}
    end
  end

  # -- types of the schema (public for Hotpath.Options) ------------------------------------

  @doc false
  def policies(nil), do: {:ok, nil}

  def policies(policies) when is_list(policies) and policies != [] do
    if not Keyword.keyword?(policies), do: throw(:error)

    if length(policies) > @max_policies do
      raise ArgumentError,
            ":policies holds at most #{@max_policies} policies, got #{length(policies)} " <>
              "(Hotpath.RateLimiter)"
    end

    case policies -- Enum.uniq_by(policies, &elem(&1, 0)) do
      [] ->
        :ok

      [{name, _} | _] ->
        raise ArgumentError,
              ":policies names each policy once, got #{inspect(name)} twice (Hotpath.RateLimiter)"
    end

    {:ok,
     for {name, popts} <- policies do
       where = "Hotpath.RateLimiter policy #{inspect(name)}"
       popts = Hotpath.Options.validate!(popts, @policy_schema, where)

       :ok =
         Hotpath.Native.limiter_validate(
           popts[:algorithm],
           popts[:limit],
           popts[:period],
           popts[:burst]
         )

       {name, popts}
     end}
  catch
    :error -> :error
  end

  def policies(_other), do: :error

  @doc false
  def ban(nil), do: {:ok, nil}

  def ban(ban) when is_list(ban) do
    ban = Hotpath.Options.validate!(ban, @ban_schema, "Hotpath.RateLimiter :ban")

    case {ban[:after], ban[:within]} do
      {nil, nil} -> :ok
      {a, w} when a != nil and w != nil -> :ok
      _ -> raise ArgumentError, ":after and :within go together in :ban (Hotpath.RateLimiter)"
    end

    if ban[:max] && ban[:max] < ban[:for] do
      raise ArgumentError,
            ":max must be at least :for (#{ban[:for]}), got: #{ban[:max]} (Hotpath.RateLimiter :ban)"
    end

    {:ok, ban}
  end

  def ban(_other), do: :error

  @doc false
  def backoff(n) when is_number(n) and n >= 1 and n <= 1000, do: {:ok, n}
  def backoff(_other), do: :error

  @doc false
  # What a `:cost` function of the Plug or the LiveView hook returned: a positive integer,
  # else an ArgumentError in the caller.
  def cost!(n) when is_integer(n) and n > 0, do: n

  def cost!(other) do
    raise ArgumentError,
          "the :cost function must return a positive integer, got: #{inspect(other)}"
  end
end
