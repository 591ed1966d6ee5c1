defmodule Hotpath.RateLimiter.Cluster do
  @moduledoc false
  # Cluster mode of Hotpath.RateLimiter (see its "Cluster mode" docs).
  #
  # A cluster limiter named `name` is a supervisor of two children (rest_for_one):
  #
  #   1. a `:pg` scope registered as `scope_name(name)`: one per limiter, so the library
  #      starts no global process and two limiters on a node never share one;
  #   2. a supervisor of three independent processes (one_for_one), started in order:
  #      a. the owner of this node's table (`Hotpath.RateLimiter.Owner`), registered and
  #         published natively under `local_name(name)`;
  #      b. the member (`Hotpath.RateLimiter.Cluster.Member`), registered as `name`: it
  #         follows the group `name` of the scope and keeps this struct, the view of the
  #         cluster, in `:persistent_term` under `{Hotpath.RateLimiter, name}` as
  #         `{:cluster, struct}`;
  #      c. the presence (`Hotpath.RateLimiter.Cluster.Presence`), which joins the group: the
  #         other nodes see this node as a member from then on.
  #
  # Only the scope's loss takes the others down (their monitor and group entry live in it).
  # A crashed owner or member loses nothing (the table and the view stay published and the
  # restarted process takes them over), so it restarts alone: the presence stays in the group
  # and no key moves between nodes. A crashed presence leaves the group and joins it again.
  #
  # Nothing is published natively under `name` itself, so the one-NIF hot path of
  # `Hotpath.RateLimiter.hit/2,3` answers `:unpublished` for a cluster limiter, and only then
  # does Elixir come here. Non-cluster limiters never reach this module.

  alias Hotpath.Native
  alias Hotpath.RateLimiter
  alias Hotpath.RateLimiter.Cluster.{Member, Presence}
  alias Hotpath.RateLimiter.{Key, Owner}

  import Bitwise

  @enforce_keys [:name, :local, :scope, :mode, :timeout, :fallback, :config]
  defstruct [
    :name,
    :local,
    :scope,
    :mode,
    :timeout,
    :fallback,
    :config,
    :ref,
    deny_events: false,
    self: nil,
    members: [],
    size: 1,
    share: nil
  ]

  @type t :: %__MODULE__{}

  # ---- supervision -----------------------------------------------------------------------

  @doc "The `:pg` scope of a cluster limiter."
  def scope_name(name), do: :"hotpath_cluster:#{name}"

  @doc "The name this node's table of a cluster limiter runs and is published under."
  def local_name(name), do: :"hotpath_local:#{name}"

  @doc "Starts the supervisor of a cluster limiter; `opts` are validated limiter options."
  def start_link(opts) do
    name = opts[:name]
    local = local_name(name)
    scope = scope_name(name)

    local_opts =
      opts
      |> Keyword.merge(name: local, telemetry_denies: false)
      |> Keyword.put(:report_as, name)

    cluster = %__MODULE__{
      name: name,
      local: local,
      scope: scope,
      mode: opts[:cluster],
      # :local_share has no remote decisions; its maintenance calls use the same default.
      timeout: opts[:cluster_timeout] || 100,
      fallback: opts[:cluster_fallback],
      config: opts,
      deny_events: opts[:telemetry_denies]
    }

    processes = [
      %{id: Owner, start: {GenServer, :start_link, [Owner, local_opts, [name: local]]}},
      %{id: Member, start: {Member, :start_link, [cluster]}},
      %{id: Presence, start: {Presence, :start_link, [{scope, name}]}}
    ]

    children = [
      %{id: :pg, start: {:pg, :start_link, [scope]}},
      %{
        id: :processes,
        type: :supervisor,
        start: {Supervisor, :start_link, [processes, [strategy: :one_for_one]]}
      }
    ]

    # The same answer as for a non-cluster limiter whose name is taken, before any child
    # (the scope would fail first, with a less telling reason).
    case Process.whereis(name) do
      nil -> Supervisor.start_link(children, strategy: :rest_for_one)
      pid -> {:error, {:already_started, pid}}
    end
  end

  @doc """
  The view for a membership: this node's node name, the members (sorted node names with their
  hashes) and the share of the limit each node enforces when it decides alone.
  """
  def with_members(%__MODULE__{} = c, nodes) do
    nodes = nodes |> Enum.uniq() |> Enum.sort()
    size = max(length(nodes), 1)

    %{
      c
      | self: node(),
        members: Enum.map(nodes, &{&1, :erlang.phash2(&1)}),
        size: size,
        share: config_share(c.config, size)
    }
  end

  # This node's share of every policy: one `{limit, period, burst}`, or a list of them (one
  # per policy) for a limiter of several policies.
  defp config_share(config, size) do
    case config[:policies] do
      nil ->
        share(config[:limit], config[:period], config[:burst], size)

      policies ->
        for {_name, p} <- policies, do: share(p[:limit], p[:period], p[:burst], size)
    end
  end

  # The policy `{limit, period, burst}` of one node out of `size`: the limit and burst
  # divided by the number of nodes, rounded down (so `size` nodes together never admit more
  # than the limit, when the limit is at least `size`), at least 1.
  defp share(limit, period, burst, size) do
    {max(div(limit, size), 1), period, burst && max(div(burst, size), 1)}
  end

  # ---- ownership ---------------------------------------------------------------------------

  @doc """
  The member that owns `key`: rendezvous (highest random weight) hashing, the member whose
  hash mixed with the key's scores highest. Adding or removing a member moves only the keys
  it gains or owned. `nil` without members.

  The key's hash is `:erlang.phash2/1`, the same on every node for the same term (keys are
  plain data: binaries, numbers, atoms, tuples and lists of them).
  """
  def owner([], _key), do: nil
  def owner([{node, _node_hash}], _key), do: node
  def owner(members, key), do: pick(members, :erlang.phash2(key), nil, -1)

  defp pick([], _key_hash, best, _best_score), do: best

  defp pick([{node, node_hash} | rest], key_hash, best, best_score) do
    case score(node_hash, key_hash) do
      score when score > best_score -> pick(rest, key_hash, node, score)
      _ -> pick(rest, key_hash, best, best_score)
    end
  end

  # A bijection of 28-bit integers (xor-shift and odd multiplier steps, as in MurmurHash's
  # finalizer) of the member's and the key's hashes: distinct members never tie, and every
  # product stays a small integer (under 2^59), so nothing allocates.
  @mask 0xFFFFFFF
  @doc false
  def score(node_hash, key_hash) do
    h = bxor(node_hash, key_hash)
    h = band(bxor(h, h >>> 14) * 0x5BD1E995, @mask)
    h = band(bxor(h, h >>> 13) * 0x27D4EB2D, @mask)
    bxor(h, h >>> 15)
  end

  @doc "The node that decides `key` in this view."
  def node_for(%__MODULE__{mode: :owner, members: members, self: self}, key) do
    case owner(members, key) do
      nil -> node()
      ^self -> node()
      owner -> owner
    end
  end

  def node_for(%__MODULE__{}, _key), do: node()

  # ---- decisions ---------------------------------------------------------------------------

  @doc """
  `Hotpath.RateLimiter.hit/2,3` of a cluster limiter, after the NIF found nothing published
  under `name`: a key owned here takes the one-NIF path by this node's table name.
  """
  def hit(name, key, cost) do
    case :persistent_term.get({RateLimiter, name}, nil) do
      {:cluster, %__MODULE__{mode: :owner, members: members, self: self} = c} ->
        case owner(members, key) do
          owner when owner in [self, nil] -> RateLimiter.call_local(c.local, :hit, key, cost, [])
          owner -> remote(c, owner, :hit, key, cost, [])
        end
        |> report(c, key, cost)

      {:cluster, %__MODULE__{} = c} ->
        c |> local_share(:hit, key, cost, []) |> report(c, key, cost)

      _ ->
        RateLimiter.not_running!(name)
    end
  end

  @doc """
  A hit (`op` `:hit`) or peek (`:peek`) of a cluster limiter, `opts` as in `hit/4`; or a ban
  operation (`:ban`, `:unban`, `:banned?`, `cost` the ban's length, `opts` only `:now`),
  decided on the key's owner like a hit (an unban is made on every connected member).
  """
  def call(%__MODULE__{} = c, op, key, cost, opts) do
    check!(c, op, key, cost, opts)
    decision = decide(c, op, key, cost, opts)
    if op == :hit, do: report(decision, c, key, cost), else: decision
  end

  defp report({:deny, retry_after, reset_after} = decision, %{deny_events: true} = c, key, cost) do
    Hotpath.Telemetry.emit(Owner.deny_event(c.name, key, cost, retry_after, reset_after))
    decision
  end

  defp report(
         {:deny, retry_after, reset_after, violated} = decision,
         %{deny_events: true} = c,
         key,
         cost
       ) do
    Hotpath.Telemetry.emit(
      Owner.deny_event(c.name, key, cost, retry_after, reset_after, violated)
    )

    decision
  end

  defp report(:unpublished, c, _key, _cost), do: RateLimiter.not_running!(c.name)
  defp report(decision, _c, _key, _cost), do: decision

  # Bad arguments raise here, in the caller, before anything is sent to an owner: the cost,
  # the key (whatever the owner would refuse) and the whole policy.
  defp check!(c, op, key, cost, opts) do
    if not (is_integer(cost) and cost > 0) do
      raise ArgumentError, "cost must be a positive integer, got: #{inspect(cost)}"
    end

    :ok = Key.check!(key)

    if opts != [] do
      {_now, policy, _index} = RateLimiter.call_opts!(opts, c.config, op)
      RateLimiter.validate_policy!(policy, c.config)
    end
  end

  @ban_ops [:ban, :unban, :banned?]

  defp decide(%__MODULE__{mode: :local_share} = c, op, key, cost, opts) when op in @ban_ops,
    do: local!(c, op, key, cost, opts)

  defp decide(%__MODULE__{mode: :local_share} = c, op, key, cost, opts),
    do: local_share(c, op, key, cost, opts)

  # An unban clears the key's ban on every connected member, not only on its owner: a ban
  # placed while the owner did not answer sits on the caller's table (`fallback/7`), and one
  # placed before the members last changed on the key's owner of that time.
  defp decide(%__MODULE__{mode: :owner} = c, :unban, key, cost, opts) do
    :ok = local!(c, :unban, key, cost, opts)
    on_other_members(c, :decide_as_owner, [c.name, :unban, key, cost, opts])
  end

  defp decide(%__MODULE__{mode: :owner} = c, op, key, cost, opts) do
    case node_for(c, key) do
      node when node == node() -> local!(c, op, key, cost, opts)
      owner -> remote(c, owner, op, key, cost, opts)
    end
  end

  # Only a connected owner is called. The view lags a lost connection (until the member
  # hears of it from `:pg`), and an `:erpc` call to a node that is not connected connects it
  # again: it would undo a `Node.disconnect/1`, or a cut made by `global` to keep partitions
  # disjoint, so the partitions would merge back.
  defp remote(c, owner, op, key, cost, opts) do
    if owner in Node.list(),
      do: call_owner(c, owner, op, key, cost, opts),
      else: fallback(c, owner, :noconnection, op, key, cost, opts)
  end

  defp call_owner(c, owner, op, key, cost, opts) do
    :erpc.call(owner, __MODULE__, :decide_as_owner, [c.name, op, key, cost, opts], c.timeout)
  catch
    # A bad key is refused by the owner as it would be here: raise it in the caller.
    :error, {:exception, %ArgumentError{} = e, stack} ->
      reraise e, stack

    :error, {:erpc, reason} when reason in [:timeout, :noconnection] ->
      fallback(c, owner, reason, op, key, cost, opts)

    kind, reason ->
      fallback(c, owner, {kind, reason}, op, key, cost, opts)
  else
    {:ok, decision} -> decision
    {:error, :not_running} -> fallback(c, owner, :not_running, op, key, cost, opts)
  end

  @doc """
  The owner's side of a remote decision (called through `:erpc`): `{:ok, decision}` from this
  node's table, or `{:error, :not_running}` when the limiter does not run here.
  """
  def decide_as_owner(name, op, key, cost, opts) do
    with {:cluster, %__MODULE__{} = c} <- :persistent_term.get({RateLimiter, name}, nil),
         result when result != :unpublished <- local(c, op, key, cost, opts) do
      {:ok, result}
    else
      _ -> {:error, :not_running}
    end
  end

  defp fallback(c, owner, reason, op, key, cost, opts) do
    fallback = if op in @ban_ops, do: :local, else: c.fallback
    Hotpath.Telemetry.emit(fallback_event(c.name, key, owner, reason, fallback))

    case fallback do
      # A ban operation whose owner does not answer acts on this node's table.
      :local -> local!(c, op, key, cost, opts)
      :local_share -> local_share(c, op, key, cost, opts)
      :allow -> allow(c)
      :deny -> deny(c)
    end
  end

  # The fallback answers, in the limiter's shape.
  defp allow(%{config: config}) do
    case config[:policies] do
      nil -> {:allow, 0, 0}
      [{name, _} | _] -> {:allow, 0, 0, name}
    end
  end

  defp deny(%{config: config, timeout: timeout}) do
    case config[:policies] do
      nil -> {:deny, timeout, 0}
      policies -> {:deny, timeout, 0, Keyword.keys(policies)}
    end
  end

  @doc false
  def fallback_event(name, key, owner, reason, fallback) do
    {[:hotpath, :rate_limiter, :cluster_fallback], %{count: 1},
     %{limiter: name, key: key, owner: owner, reason: reason, fallback: fallback}}
  end

  # This node's table with this node's share of the policy (of the call's, if it sets one).
  defp local_share(%__MODULE__{share: share} = c, op, key, cost, []) when op in [:hit, :peek],
    do: native_share(c, op, key, cost, nil, share)

  # A limiter of several policies: every policy's share (its calls set no policy).
  defp local_share(%__MODULE__{share: share} = c, op, key, cost, opts) when is_list(share) do
    {now, _policy, index} = RateLimiter.call_opts!(opts, c.config, op)
    native_op = if index, do: {:peek, index}, else: op
    native_share(c, native_op, key, cost, now, share)
  end

  defp local_share(c, op, key, cost, opts) do
    limit = Keyword.get(opts, :limit, c.config[:limit])
    burst = Keyword.get(opts, :burst, c.config[:burst])
    {limit, _period, burst} = share(limit, nil, burst, c.size)
    shared = if burst, do: [limit: limit, burst: burst], else: [limit: limit]
    local!(c, op, key, cost, Keyword.merge(opts, shared))
  end

  defp native_share(c, op, key, cost, now, share) do
    key
    |> Key.native(&Native.limiter_call(c.ref, op, &1, cost, now, share))
    |> RateLimiter.answer(c.name, key, cost)
  end

  defp local!(c, op, key, cost, opts) do
    case local(c, op, key, cost, opts) do
      :unpublished -> RateLimiter.not_running!(c.name)
      decision -> decision
    end
  end

  # This node's table (the one-NIF path by name for a hit without options).
  defp local(c, op, key, cost, opts), do: RateLimiter.call_local(c.local, op, key, cost, opts)

  # ---- maintenance ---------------------------------------------------------------------------

  @doc """
  `reset/2` (`args` `[key]`) or `reset_all/1` (`args` `[]`) of a cluster limiter: on this
  node's table first (so bad arguments raise here), then on every other member, waiting at
  most the cluster timeout for them. Members that do not answer, or are no longer connected
  (not called, as in `remote/6`), are skipped.
  """
  def reset(%__MODULE__{} = c, args) do
    :ok = apply(RateLimiter, reset_fun(args), [c.local | args])
    on_other_members(c, :reset_here, [c.name, args])
  end

  # Calls `fun` on every other member this node is connected to, waiting at most the cluster
  # timeout; answers are not read. Members not connected are not called (see `remote/6`).
  defp on_other_members(c, fun, args) do
    connected = Node.list()

    case for {node, _hash} <- c.members, node != c.self, node in connected, do: node do
      [] -> :ok
      others -> _ = :erpc.multicall(others, __MODULE__, fun, args, c.timeout)
    end

    :ok
  end

  @doc false
  def reset_here(name, args) do
    case :persistent_term.get({RateLimiter, name}, nil) do
      {:cluster, c} -> apply(RateLimiter, reset_fun(args), [c.local | args])
      _ -> :ok
    end
  end

  defp reset_fun([_key]), do: :reset
  defp reset_fun([_key, _opts]), do: :reset
  defp reset_fun([]), do: :reset_all

  @doc "What `Hotpath.RateLimiter.info/1` adds for a cluster limiter."
  def info(%__MODULE__{} = c) do
    %{
      mode: c.mode,
      members: Enum.map(c.members, &elem(&1, 0)),
      share: info_share(c.share, c.config)
    }
  end

  defp info_share({limit, _period, burst}, _config), do: %{limit: limit, burst: burst}

  defp info_share(shares, config) do
    for {{name, _}, {limit, _period, burst}} <- Enum.zip(config[:policies], shares),
        do: {name, %{limit: limit, burst: burst}}
  end
end
