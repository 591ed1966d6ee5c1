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
    max_keys: {"the most keys stored at once, a positive integer (default 1_000_000)", 1_000_000},
    on_full: {":deny or :allow: what a full table answers for a new key (default :deny)", :deny},
    sweep_every:
      {"milliseconds between sweeps of expired keys, a positive integer or :infinity " <>
         "(default 30_000)", 30_000},
    telemetry_denies:
      {"emit [:hotpath, :rate_limiter, :deny] for every denied hit (default false)", false}
  ]

  @keys Keyword.keys(@specs)

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

    opts
  end

  defp check!(:name, name) when is_atom(name) and name not in [nil, true, false], do: name
  defp check!(:algorithm, algorithm) when algorithm in @algorithms, do: algorithm
  defp check!(key, n) when key in [:limit, :period, :max_keys] and is_integer(n) and n > 0, do: n
  defp check!(:burst, nil), do: nil
  defp check!(:burst, n) when is_integer(n) and n > 0, do: n
  defp check!(:on_full, on_full) when on_full in [:deny, :allow], do: on_full
  defp check!(:sweep_every, :infinity), do: :infinity
  defp check!(:sweep_every, n) when is_integer(n) and n > 0, do: n
  defp check!(:telemetry_denies, flag) when is_boolean(flag), do: flag

  defp check!(key, value) do
    {doc, _} = Keyword.fetch!(@specs, key)
    raise ArgumentError, "invalid #{inspect(key)}: #{inspect(value)}; expected #{doc}"
  end

  @doc "The options that shape the native table: equal ones let a restarted owner reuse it."
  def table_options(opts),
    do: Keyword.take(opts, [:algorithm, :limit, :period, :burst, :max_keys, :on_full])
end
