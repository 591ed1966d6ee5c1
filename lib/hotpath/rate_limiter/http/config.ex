defmodule Hotpath.RateLimiter.HTTP.Config do
  @moduledoc """
  The validated options of `Hotpath.RateLimiter.HTTP` (built by
  `Hotpath.RateLimiter.HTTP.init/1`). The struct holds only terms that can be stored at
  compile time (a Plug's options), provided functions are given as captures of named
  functions (`&MyApp.key/1`).
  """

  alias Hotpath.RateLimiter.HTTP.ClientIP

  @schema [
    limiter: [type: :name, required: true, doc: "The name of a `Hotpath.RateLimiter`"],
    key: [
      type:
        {:or,
         [
           {:value, :ip},
           {:fun, 1},
           {:custom, __MODULE__, :fixed_or_mfa, "{:fixed, key}, {module, function, args}"}
         ]},
      default: :ip,
      doc:
        "`:ip`: the client address (see `:trusted_proxies`); a function of the request " <>
          "returning the key; `{module, function, args}` (called with the request first); or " <>
          "`{:fixed, key}` (one key for every request)"
    ],
    cost: [
      type: {:or, [{:integer, 1, :infinity}, {:fun, 1}]},
      default: 1,
      doc: "The cost of a request, or a function of the request returning it"
    ],
    trusted_proxies: [
      type: {:custom, __MODULE__, :cidrs, "a list of CIDR strings"},
      default: [],
      doc:
        "CIDR blocks of your reverse proxies and load balancers (`[]`: the peer address is " <>
          "the client and forwarding headers are ignored), e.g. " <>
          ~s(`["10.0.0.0/8", "fd00::/8"]`)
    ],
    ip_header: [
      type: {:custom, __MODULE__, :lowercase, "a non-empty lowercase string"},
      default: "x-forwarded-for",
      doc:
        ~s(The forwarding header your trusted proxies append to: `"x-forwarded-for"`, ) <>
          ~s[`"forwarded"` (RFC 7239) or another name]
    ],
    ipv6_prefix: [
      type: {:integer, 1, 128},
      default: 64,
      doc:
        "IPv6 clients are keyed by this many leading bits of their address (a client " <>
          "usually holds a whole /64)"
    ],
    on_nil_key: [
      type: {:or, [{:in, [:allow, :deny]}, {:custom, __MODULE__, :key_choice, "{:key, key}"}]},
      default: :allow,
      doc:
        "What a request whose key is `nil` gets: `:allow` (not counted), `:deny`, or " <>
          "`{:key, key}` (counted against that one shared key)"
    ],
    on_unavailable: [
      type: {:in, [:allow, :deny]},
      default: :allow,
      doc:
        "When the limiter is not running: `:allow` (fail open: no rate-limit headers) or " <>
          "`:deny` (fail closed: `503` with `retry-after: 1`)"
    ],
    headers: [
      type: {:in, [:draft, :legacy, :both, :none]},
      default: :draft,
      doc: "The rate-limit headers of a response"
    ],
    problem_details: [
      type: :boolean,
      default: false,
      doc: "`true` for an `application/problem+json` deny body, `false` for text"
    ],
    deny_status: [type: {:integer, 400, 599}, default: 429, doc: "The status of a denial"],
    policy_name: [
      type: {:custom, __MODULE__, :printable, "a non-empty string of printable ASCII"},
      doc_default: "the limiter's name, without `Elixir.`",
      doc: "The policy's name in the headers"
    ],
    quota: [
      type: {:integer, 1, :infinity},
      doc_default: "the limiter's `limit`",
      doc: "The quota `q` the headers announce"
    ],
    window: [
      type: {:integer, 1, :infinity},
      doc_default: "the limiter's `period`, rounded up",
      doc: "The window `w` in seconds"
    ]
  ]

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
  def docs, do: Hotpath.Options.docs(@schema)

  @doc """
  Validates `opts` and builds the config. Raises `ArgumentError` naming the bad option.

      iex> Hotpath.RateLimiter.HTTP.Config.new!(limiter: MyApp.Limiter).policy_name
      "MyApp.Limiter"
      iex> Hotpath.RateLimiter.HTTP.Config.new!(limiter: MyApp.Limiter, headers: :fancy)
      ** (ArgumentError) :headers must be one of :draft, :legacy, :both, :none, got: :fancy (Hotpath.RateLimiter.HTTP)
  """
  @spec new!(keyword()) :: t()
  def new!(opts) do
    fields = Hotpath.Options.validate!(opts, @schema, "Hotpath.RateLimiter.HTTP")
    config = struct!(__MODULE__, [policy_name: default_name(fields[:limiter])] ++ fields)

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

  # Types of the schema (public for `Hotpath.Options`).

  # A function's module is not checked for existence: a router's plug options are validated
  # while the module may still be compiling.
  @doc false
  def fixed_or_mfa({:fixed, _} = fixed), do: {:ok, fixed}
  def fixed_or_mfa({m, f, a} = mfa) when is_atom(m) and is_atom(f) and is_list(a), do: {:ok, mfa}
  def fixed_or_mfa(_other), do: :error

  @doc false
  def cidrs(list) when is_list(list), do: {:ok, ClientIP.parse_cidrs!(list)}
  def cidrs(_other), do: :error

  @doc false
  def lowercase(name) when is_binary(name) and name != "" do
    if String.downcase(name) == name, do: {:ok, name}, else: :error
  end

  def lowercase(_other), do: :error

  @doc false
  def key_choice({:key, key}) when key != nil, do: {:ok, {:key, key}}
  def key_choice(_other), do: :error

  @doc false
  def printable(name) when is_binary(name) and name != "" do
    if name =~ ~r/\A[\x20-\x7E]+\z/, do: {:ok, name}, else: :error
  end

  def printable(_other), do: :error
end
