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
           {:custom, __MODULE__, :key_spec,
            "{:session, name}, {:assign, name}, {:assign, [name, ...]} or {m, f, a}"}
         ]},
      required: true,
      doc:
        "The key of a socket's events: `{:session, name}` (the session's value, read at mount), " <>
          "`{:assign, name}` or `{:assign, path}` (an assign of the socket, or a value inside " <>
          "one, as `[:current_scope, :user, :id]`: `nil` where the path ends early), a function " <>
          "of the socket, or `{module, function, args}` (called with the socket first). " <>
          "Assigns and functions are read at each event, and with `:mount_limiter` once at " <>
          "mount too (put this hook after the one that assigns the user)"
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

  @enforce_keys [:limiter, :key]
  defstruct [
    :limiter,
    :key,
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

      iex> Hotpath.RateLimiter.LiveView.Hook.new!(limiter: MyApp.Limiter, key: {:assign, :user_id}).events
      :all

      iex> Hotpath.RateLimiter.LiveView.Hook.new!(limiter: MyApp.Limiter)
      ** (ArgumentError) missing required option :key (Hotpath.RateLimiter.LiveView): expected a function of arity 1 or {:session, name}, {:assign, name}, {:assign, [name, ...]} or {m, f, a}

      iex> Hotpath.RateLimiter.LiveView.Hook.new!(limiter: MyApp.Limiter, key: {:assign, :user_id}, events: "save")
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

  def key_spec({:assign, name}) when is_atom(name), do: {:ok, {:assign, [name]}}

  def key_spec({:assign, [_ | _] = path} = spec) do
    if Enum.all?(path, &is_atom/1), do: {:ok, spec}, else: :error
  end

  def key_spec({m, f, a} = mfa) when is_atom(m) and is_atom(f) and is_list(a), do: {:ok, mfa}
  def key_spec(_other), do: :error

  @doc """
  The key at mount, from the session and the socket as the `on_mount` callback gets them:
  the key of every event for `key: {:session, name}` (a session's keys are strings; an atom
  name is looked up as its string too), and what `:mount_limiter` counts. The other key
  kinds are read from the socket at each event (`event_key/3`), and here only for a
  `:mount_limiter` (without one, `nil`: a key function is not called before the view's own
  `mount/3` has run).

      iex> config = Hotpath.RateLimiter.LiveView.Hook.new!(limiter: :l, key: {:session, "user_id"})
      iex> Hotpath.RateLimiter.LiveView.Hook.mount_key(config, %{"user_id" => 42}, %{assigns: %{}})
      42
      iex> path = [:current_scope, :user, :id]
      iex> config = Hotpath.RateLimiter.LiveView.Hook.new!(limiter: :l, key: {:assign, path}, mount_limiter: :m)
      iex> Hotpath.RateLimiter.LiveView.Hook.mount_key(config, %{}, %{assigns: %{current_scope: %{user: %{id: 7}}}})
      7
      iex> Hotpath.RateLimiter.LiveView.Hook.mount_key(config, %{}, %{assigns: %{current_scope: nil}})
      nil
  """
  @spec mount_key(t(), map(), map()) :: term()
  def mount_key(%__MODULE__{key: {:session, name}}, session, _socket) when is_map(session),
    do: Map.get(session, to_string(name))

  def mount_key(%__MODULE__{key: {:session, _}}, _session, _socket), do: nil
  def mount_key(%__MODULE__{mount_limiter: nil}, _session, _socket), do: nil
  def mount_key(%__MODULE__{} = config, _session, socket), do: event_key(config, socket, nil)

  @doc "The key of an event on `socket`, given the key at mount (`mount_key/3`)."
  @spec event_key(t(), map(), term()) :: term()
  def event_key(%__MODULE__{key: {:session, _}}, _socket, mount_key), do: mount_key

  def event_key(%__MODULE__{key: {:assign, path}}, %{assigns: assigns}, _),
    do: get_path(assigns, path)

  def event_key(%__MODULE__{key: fun}, socket, _) when is_function(fun, 1), do: fun.(socket)
  def event_key(%__MODULE__{key: {m, f, a}}, socket, _), do: apply(m, f, [socket | a])

  # `get_in/2` over maps and structs alike, `nil` where a step is missing or `nil`. (`new!/1`
  # makes every assign key a path; a struct built by hand may hold a bare name.)
  defp get_path(value, name) when is_atom(name), do: get_path(value, [name])
  defp get_path(value, []), do: value
  defp get_path(%{} = map, [name | rest]), do: get_path(Map.get(map, name), rest)
  defp get_path(_value, _path), do: nil

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
