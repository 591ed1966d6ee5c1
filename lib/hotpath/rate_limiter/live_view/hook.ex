defmodule Hotpath.RateLimiter.LiveView.Hook do
  @moduledoc """
  The logic of `Hotpath.RateLimiter.LiveView`, as pure functions over plain maps: which key a
  LiveView's events count against, whether an event (or a connected mount) is admitted, and
  what a refusal does. It calls `Hotpath.RateLimiter` and nothing of Phoenix, so it is tested
  without LiveView; the adapter applies its answers with `Phoenix.LiveView` functions.

  A socket is any map with `:assigns` (a `Phoenix.LiveView.Socket` is one).
  """

  @schema [
    limiter: [type: :name, required: true, doc: "The `Hotpath.RateLimiter` that limits events"],
    key: [
      type:
        {:or,
         [
           {:fun, 1},
           {:custom, __MODULE__, :key_spec, "{:session, name}, {:assign, name} or {m, f, a}"}
         ]},
      default: {:session, "user_id"},
      doc:
        "The key of a socket's events: `{:session, name}` (the session's value, read at mount), " <>
          "`{:assign, name}` (an assign of the socket at each event), a function of the socket, " <>
          "or `{module, function, args}` (called with the socket first)"
    ],
    events: [
      type: {:or, [{:value, :all}, {:list, :string}]},
      default: :all,
      doc: "The events counted: `:all`, or a list of event names (others pass uncounted)"
    ],
    cost: [
      type: {:or, [{:integer, 1, :infinity}, {:fun, 2}]},
      default: 1,
      doc: "The cost of an event, or a function of the event name and params returning it"
    ],
    on_nil_key: [
      type: {:in, [:allow, :deny]},
      default: :allow,
      doc: "What an event whose key is `nil` gets (no user in the session, say)"
    ],
    on_deny: [
      type: {:or, [{:fun, 3}, {:value, :flash}]},
      default: :flash,
      doc:
        "What a refused event does: `:flash` (an `:error` flash, `:message`, and no state " <>
          "change) or a function `(socket, event, decision) -> socket`"
    ],
    message: [
      type: :string,
      default: "You are doing that too often. Please wait a moment.",
      doc: "The flash of a refused event with `on_deny: :flash`"
    ],
    mount_limiter: [
      type: {:or, [{:value, nil}, :name]},
      default: nil,
      doc:
        "A `Hotpath.RateLimiter` that limits connected mounts under the same key (`nil`: " <>
          "mounts are not limited)"
    ],
    mount_redirect: [
      type: :string,
      default: "/",
      doc: "Where a refused connected mount is redirected"
    ],
    id: [
      type: :atom,
      default: :hotpath_rate_limit,
      doc:
        "The name of the `handle_event` hook: give each a name of its own to attach more " <>
          "than one to a view (say, every event against one limiter and `\"send\"` against a " <>
          "stricter one)"
    ]
  ]

  @enforce_keys [:limiter]
  defstruct [
    :limiter,
    key: {:session, "user_id"},
    events: :all,
    cost: 1,
    on_nil_key: :allow,
    on_deny: :flash,
    message: nil,
    mount_limiter: nil,
    mount_redirect: "/",
    id: :hotpath_rate_limit
  ]

  @type t :: %__MODULE__{}

  @typedoc "What the adapter does with an event: go on, or halt with one of these effects."
  @type event_action ::
          :cont | {:halt, {:flash, :error, String.t()}} | {:halt, {:apply, (map() -> map())}}

  @doc false
  def docs, do: Hotpath.Options.docs(@schema)

  @doc """
  Validates options (see `Hotpath.RateLimiter.LiveView`) and returns the config. Raises
  `ArgumentError` naming the bad option.

      iex> Hotpath.RateLimiter.LiveView.Hook.new!(limiter: MyApp.Limiter).events
      :all
      iex> Hotpath.RateLimiter.LiveView.Hook.new!(limiter: MyApp.Limiter, events: "save")
      ** (ArgumentError) :events must be :all or a list (each element a non-empty string), got: "save" (Hotpath.RateLimiter.LiveView)
  """
  @spec new!(keyword()) :: t()
  def new!(opts) do
    fields = Hotpath.Options.validate!(opts, @schema, "Hotpath.RateLimiter.LiveView")
    struct!(__MODULE__, fields)
  end

  @doc false
  def key_spec({:session, name}) when is_binary(name) or is_atom(name),
    do: {:ok, {:session, name}}

  def key_spec({:assign, name}) when is_atom(name), do: {:ok, {:assign, name}}
  def key_spec({m, f, a} = mfa) when is_atom(m) and is_atom(f) and is_list(a), do: {:ok, mfa}
  def key_spec(_other), do: :error

  @doc """
  The key fixed at mount: the session's value for `key: {:session, name}` (a session's keys
  are strings; an atom name is looked up as its string too), `nil` for the other key kinds
  (read at each event with `event_key/3`).

      iex> config = Hotpath.RateLimiter.LiveView.Hook.new!(limiter: :l)
      iex> Hotpath.RateLimiter.LiveView.Hook.mount_key(config, %{"user_id" => 42})
      42
  """
  @spec mount_key(t(), map()) :: term()
  def mount_key(%__MODULE__{key: {:session, name}}, session) when is_map(session),
    do: Map.get(session, to_string(name))

  def mount_key(%__MODULE__{}, _session), do: nil

  @doc "The key of an event on `socket`, given the key fixed at mount."
  @spec event_key(t(), map(), term()) :: term()
  def event_key(%__MODULE__{key: {:session, _}}, _socket, mount_key), do: mount_key

  def event_key(%__MODULE__{key: {:assign, name}}, %{assigns: assigns}, _),
    do: Map.get(assigns, name)

  def event_key(%__MODULE__{key: fun}, socket, _) when is_function(fun, 1), do: fun.(socket)
  def event_key(%__MODULE__{key: {m, f, a}}, socket, _), do: apply(m, f, [socket | a])

  @doc """
  Decides one `handle_event` call: `:cont` (counted and admitted, or not counted) or
  `{:halt, effect}` for a refused event, where `effect` is `{:flash, :error, message}` or
  `{:apply, fun}` (the `:on_deny` function, applied by the adapter to the socket). A limiter
  that is not running admits (fail open).
  """
  @spec event(t(), String.t(), term(), term()) :: event_action()
  def event(%__MODULE__{} = config, event, params, key) do
    cond do
      not counted?(config, event) -> :cont
      key == nil and config.on_nil_key == :allow -> :cont
      key == nil -> {:halt, deny_effect(config, event, :no_key)}
      true -> decide(config, event, params, key)
    end
  end

  defp counted?(%__MODULE__{events: :all}, _event), do: true
  defp counted?(%__MODULE__{events: events}, event), do: event in events

  defp decide(config, event, params, key) do
    case hit(config.limiter, key, cost(config, event, params)) do
      :unavailable -> :cont
      decision when elem(decision, 0) == :allow -> :cont
      decision -> {:halt, deny_effect(config, event, decision)}
    end
  end

  defp deny_effect(%__MODULE__{on_deny: :flash, message: message}, _event, _decision),
    do: {:flash, :error, message}

  defp deny_effect(%__MODULE__{on_deny: fun}, event, decision),
    do: {:apply, fn socket -> fun.(socket, event, decision) end}

  defp cost(%__MODULE__{cost: cost}, _event, _params) when is_integer(cost), do: cost

  defp cost(%__MODULE__{cost: fun}, event, params),
    do: Hotpath.RateLimiter.Options.cost!(fun.(event, params))

  @doc """
  Decides a connected mount: `:cont` (admitted, not limited, or no key) or
  `{:halt, {:redirect, path}}`. Disconnected (static) renders are never counted: pass
  `connected?` from `Phoenix.LiveView.connected?/1`.
  """
  @spec mount(t(), boolean(), term()) :: :cont | {:halt, {:redirect, String.t()}}
  def mount(%__MODULE__{mount_limiter: nil}, _connected?, _key), do: :cont
  def mount(%__MODULE__{}, false, _key), do: :cont
  def mount(%__MODULE__{}, true, nil), do: :cont

  def mount(%__MODULE__{} = config, true, key) do
    case hit(config.mount_limiter, key, 1) do
      decision when elem(decision, 0) == :deny -> {:halt, {:redirect, config.mount_redirect}}
      _admitted_or_unavailable -> :cont
    end
  end

  defp hit(limiter, key, cost) do
    Hotpath.RateLimiter.hit(limiter, key, cost)
  rescue
    Hotpath.NotRunningError -> :unavailable
  end
end
