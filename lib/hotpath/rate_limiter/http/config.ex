defmodule Hotpath.RateLimiter.HTTP.Config do
  @moduledoc """
  The validated options of `Hotpath.RateLimiter.HTTP` (built by
  `Hotpath.RateLimiter.HTTP.init/1`). The struct holds only terms that can be stored at
  compile time (a Plug's options), provided functions are given as captures of named
  functions (`&MyApp.key/1`).
  """

  alias Hotpath.RateLimiter.HTTP.ClientIP

  @specs [
    limiter: "the name of a `Hotpath.RateLimiter` (required)",
    key:
      "`:ip` (default: the client address, see `:trusted_proxies`), a function of the " <>
        "request returning the key, `{module, function, args}` (called with the request " <>
        "first), or `{:fixed, key}` (one key for every request)",
    cost: "a positive integer (default 1) or a function of the request returning one",
    trusted_proxies:
      "CIDR blocks of your reverse proxies and load balancers (default `[]`: the peer " <>
        "address is the client and forwarding headers are ignored), e.g. " <>
        ~s(`["10.0.0.0/8", "fd00::/8"]`),
    ip_header:
      ~s(the forwarding header your trusted proxies append to: `"x-forwarded-for"` ) <>
        ~s[(default), `"forwarded"` (RFC 7239) or another lowercase name],
    ipv6_prefix:
      "IPv6 clients are keyed by this many leading bits of their address, 1..128 (default " <>
        "64: a client usually holds a whole /64)",
    on_nil_key:
      "what a request whose key is `nil` gets: `:allow` (default; not counted), `:deny`, " <>
        "or `{:key, key}` (counted against that one shared key)",
    on_unavailable:
      "when the limiter is not running: `:allow` (default, fail open: no rate-limit " <>
        "headers) or `:deny` (fail closed: `503` with `retry-after: 1`)",
    headers: "`:draft` (default), `:legacy`, `:both` or `:none`",
    problem_details:
      "`true` for an `application/problem+json` deny body, `false` (default) for text",
    deny_status: "the status of a denial, 400..599 (default 429)",
    policy_name:
      "the policy's name in the headers, printable ASCII (default: the limiter's name, " <>
        "without `Elixir.`)",
    quota: "the quota `q` the headers announce (default: the limiter's `limit`)",
    window: "the window `w` in seconds (default: the limiter's `period`, rounded up)"
  ]

  @keys Keyword.keys(@specs)

  @enforce_keys [:limiter, :policy_name]
  defstruct limiter: nil,
            key: :ip,
            cost: 1,
            trusted_proxies: [],
            ip_header: "x-forwarded-for",
            ipv6_prefix: 64,
            on_nil_key: :allow,
            on_unavailable: :allow,
            headers: :draft,
            problem_details: false,
            deny_status: 429,
            policy_name: nil,
            quota: nil,
            window: nil

  @type t :: %__MODULE__{
          limiter: atom(),
          key: :ip | {:fixed, term()} | (map() -> term()) | {module(), atom(), list()},
          cost: pos_integer() | (map() -> pos_integer()),
          trusted_proxies: [ClientIP.cidr()],
          ip_header: String.t(),
          ipv6_prefix: 1..128,
          on_nil_key: :allow | :deny | {:key, term()},
          on_unavailable: :allow | :deny,
          headers: :draft | :legacy | :both | :none,
          problem_details: boolean(),
          deny_status: 400..599,
          policy_name: String.t(),
          quota: pos_integer() | nil,
          window: pos_integer() | nil
        }

  @doc false
  def docs, do: Enum.map_join(@specs, "\n", fn {key, doc} -> "  * `#{inspect(key)}` - #{doc}" end)

  @doc """
  Validates `opts` and builds the config. Raises `ArgumentError` naming the bad option.

      iex> Hotpath.RateLimiter.HTTP.Config.new!(limiter: MyApp.Limiter).policy_name
      "MyApp.Limiter"
      iex> Hotpath.RateLimiter.HTTP.Config.new!(limiter: MyApp.Limiter, headers: :fancy)
      ** (ArgumentError) invalid :headers: :fancy; expected `:draft` (default), `:legacy`, `:both` or `:none`
  """
  @spec new!(keyword()) :: t()
  def new!(opts) do
    Hotpath.Options.validate_keys!(opts, @keys, "Hotpath.RateLimiter.HTTP")

    limiter =
      case Keyword.fetch(opts, :limiter) do
        {:ok, name} when is_atom(name) and name not in [nil, true, false] -> name
        {:ok, other} -> invalid!(:limiter, other)
        :error -> raise ArgumentError, "missing required option :limiter (a rate limiter name)"
      end

    fields =
      opts
      |> Keyword.delete(:limiter)
      |> Enum.map(fn {key, value} -> {key, check!(key, value)} end)

    config = struct!(__MODULE__, [limiter: limiter, policy_name: default_name(limiter)] ++ fields)

    if config.key != :ip and
         (Keyword.has_key?(opts, :trusted_proxies) or Keyword.has_key?(opts, :ip_header)) do
      raise ArgumentError,
            ":trusted_proxies and :ip_header only apply with key: :ip, got key: " <>
              inspect(config.key)
    end

    config
  end

  defp default_name(limiter) do
    case Atom.to_string(limiter) do
      "Elixir." <> module -> module
      name -> name
    end
    |> String.replace(~r/[^\x20-\x7E]/u, "_")
  end

  defp check!(:key, :ip), do: :ip
  defp check!(:key, {:fixed, _} = fixed), do: fixed
  defp check!(:key, fun) when is_function(fun, 1), do: fun

  # Not checked for existence: a router's plug options are validated while the module may
  # still be compiling.
  defp check!(:key, {m, f, a} = mfa) when is_atom(m) and is_atom(f) and is_list(a), do: mfa

  defp check!(:cost, n) when is_integer(n) and n > 0, do: n
  defp check!(:cost, fun) when is_function(fun, 1), do: fun
  defp check!(:trusted_proxies, list), do: ClientIP.parse_cidrs!(list)

  defp check!(:ip_header, name) when is_binary(name) and name != "" do
    if String.downcase(name) == name, do: name, else: invalid!(:ip_header, name)
  end

  defp check!(:ipv6_prefix, n) when is_integer(n) and n in 1..128, do: n
  defp check!(:on_nil_key, choice) when choice in [:allow, :deny], do: choice
  defp check!(:on_nil_key, {:key, key}) when key != nil, do: {:key, key}
  defp check!(:on_unavailable, choice) when choice in [:allow, :deny], do: choice
  defp check!(:headers, style) when style in [:draft, :legacy, :both, :none], do: style
  defp check!(:problem_details, flag) when is_boolean(flag), do: flag
  defp check!(:deny_status, status) when is_integer(status) and status in 400..599, do: status

  defp check!(:policy_name, name) when is_binary(name) and name != "" do
    if name =~ ~r/\A[\x20-\x7E]+\z/, do: name, else: invalid!(:policy_name, name)
  end

  defp check!(key, n) when key in [:quota, :window] and is_integer(n) and n > 0, do: n
  defp check!(key, value), do: invalid!(key, value)

  defp invalid!(key, value) do
    raise ArgumentError,
          "invalid #{inspect(key)}: #{inspect(value)}; expected #{Keyword.fetch!(@specs, key)}"
  end
end
