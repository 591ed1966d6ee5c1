defmodule Hotpath.RateLimiter do
  @moduledoc """
  A concurrent keyed rate limiter in native memory.

  Each limiter is a named table of keys living in Rust: every decision for a key is made
  atomically inside one NIF call, whatever the concurrency, and the answer carries what an
  HTTP response needs (remaining, exact retry-after, time to full reset). A supervised owner
  process sweeps keys that have returned to their fresh state; the table itself outlives the
  owner, so a crash and restart of the owner loses no counter.

  ## Usage

  Add a limiter to your supervision tree:

      children = [
        {Hotpath.RateLimiter,
         name: MyApp.ApiLimiter, algorithm: :gcra, limit: 100, period: :timer.minutes(1),
         burst: 20, max_keys: 1_000_000, on_full: :deny, sweep_every: :timer.seconds(30)}
      ]

  and ask it:

      case Hotpath.RateLimiter.hit(MyApp.ApiLimiter, conn.remote_ip) do
        {:allow, remaining, reset_after_ms} -> ...
        {:deny, :infinity, _reset_after_ms} -> # the cost can never fit the limit
        {:deny, retry_after_ms, reset_after_ms} -> ...
      end

  `hit/4` finds the table by name in native code: no message is sent to any process.

      iex> {:ok, _} = Hotpath.RateLimiter.start_link(name: :doc_limiter, limit: 2, period: 1_000)
      iex> Hotpath.RateLimiter.hit(:doc_limiter, "alice", 1, now: 0)
      {:allow, 1, 500}
      iex> Hotpath.RateLimiter.hit(:doc_limiter, "alice", 1, now: 0)
      {:allow, 0, 1000}
      iex> Hotpath.RateLimiter.hit(:doc_limiter, "alice", 1, now: 0)
      {:deny, 500, 1000}
      iex> Hotpath.RateLimiter.hit(:doc_limiter, "alice", 3, now: 0)
      {:deny, :infinity, 1000}
      iex> Hotpath.RateLimiter.peek(:doc_limiter, "alice", 1, now: 500)
      {:allow, 0, 1000}

  ## Algorithms

    * `:gcra` (default) - the generic cell rate algorithm: `limit` per `period` sustained,
      up to `burst` at once (default `burst: limit`), requests spaced smoothly. One timestamp
      per key.
    * `:token_bucket` - a bucket of `burst` tokens refilled at `limit` per `period`. It is
      stored as its GCRA dual, so its decisions are exact and identical to `:gcra` with the
      same parameters; choose the name that matches how you think about the policy.
    * `:fixed_window` - at most `limit` per window of `period`. A key's window opens at its
      first admitted hit after the previous window ended (no aligned resets that make every
      client retry at the same instant). Up to twice `limit` can pass across a boundary.
    * `:sliding_window` - the two-counter approximation of a sliding window: the previous
      window's count weighted by its overlap with the last `period`, plus the current count.
      No per-request log: O(1) memory per key.

  Denied requests are never charged, in every algorithm.

  ## Answers

    * `{:allow, remaining, reset_after_ms}` - admitted; `remaining` unit-cost requests would
      still be admitted now; `reset_after_ms` is the time until the key is back to its fresh
      state.
    * `{:deny, retry_after_ms, reset_after_ms}` - refused and not charged; the same request
      is admitted after `retry_after_ms` (always at least 1: times are rounded up) if nothing
      else is admitted for that key meanwhile.
    * `{:deny, :infinity, reset_after_ms}` - the cost is larger than the policy's capacity
      (`burst`, or `limit` for the window algorithms): it can never be admitted.

  A full table (see `:max_keys`) answers a new key according to `:on_full`: `:deny` gives
  `{:deny, retry_after_ms, retry_after_ms}` with the time until a stored key expires in the
  key's shard; `:allow` admits it without tracking it.

  ## Several policies

  A limiter may hold several named policies, decided together in one native call:

      {Hotpath.RateLimiter,
       name: MyApp.ApiLimiter,
       policies: [
         burst: [algorithm: :gcra, limit: 10, period: 1_000, burst: 20],
         daily: [algorithm: :fixed_window, limit: 10_000, period: :timer.hours(24)]
       ]}

  Each policy takes the options of a single-policy limiter (`:algorithm`, `:limit`,
  `:period`, `:burst`; at most 8 policies). A request is admitted only if every policy
  admits it, and then every policy is charged; a denial charges no policy. The decision
  is atomic: a key's policies live in one table entry (one slot per policy), read, decided
  and written under that entry's lock, so concurrent hits never see or leave a key half
  charged. The answers name policies:

    * `{:allow, remaining, reset_after_ms, policy}` - `policy` is the one closest to
      exhaustion (the fewest requests left, then the longest reset), with its `remaining`
      and `reset_after_ms`;
    * `{:deny, retry_after_ms, reset_after_ms, violated}` - `violated` lists the policies
      that refused, in the limiter's order; `retry_after_ms` is the largest of their waits
      (`:infinity` when one of them can never admit the cost), `reset_after_ms` the largest
      of their resets;
    * `{:deny, ms, ms, :banned}` - the key is banned (see "Bans");
    * `{:deny, ms, ms, :full}` - a new key a full table refused (`on_full: :deny`).

  `peek/4` with `policy: name` answers for one policy in the single-policy shape, `reset/3`
  with `policy: name` forgets one policy's state, and `info/1` lists the policies under
  `:policies`. A limiter started without `:policies` keeps exactly the options, answers and
  cost of a single policy.

      iex> {:ok, _} =
      ...>   Hotpath.RateLimiter.start_link(
      ...>     name: :doc_policies,
      ...>     policies: [
      ...>       burst: [algorithm: :fixed_window, limit: 2, period: 1_000],
      ...>       daily: [algorithm: :fixed_window, limit: 3, period: 86_400_000]
      ...>     ]
      ...>   )
      iex> Hotpath.RateLimiter.hit(:doc_policies, "k", 1, now: 0)
      {:allow, 1, 1000, :burst}
      iex> Hotpath.RateLimiter.hit(:doc_policies, "k", 1, now: 0)
      {:allow, 0, 1000, :burst}
      iex> Hotpath.RateLimiter.hit(:doc_policies, "k", 1, now: 0)
      {:deny, 1000, 1000, [:burst]}
      iex> Hotpath.RateLimiter.hit(:doc_policies, "k", 1, now: 1_000)
      {:allow, 0, 86399000, :daily}
      iex> Hotpath.RateLimiter.hit(:doc_policies, "k", 2, now: 2_000)
      {:deny, 86398000, 86398000, [:daily]}
      iex> Hotpath.RateLimiter.peek(:doc_policies, "k", 1, policy: :burst, now: 2_000)
      {:allow, 1, 1000}

  ## Bans

  `ban: [after: 5, within: :timer.minutes(1), for: :timer.minutes(10)]` bans a key denied
  `after` times within `within` milliseconds (fail2ban style): for `for` milliseconds every
  hit and peek of it is refused, whatever its quota, with the ban's remaining time as
  retry-after. The denial that reaches `after` is answered with the ban. A single-policy
  limiter answers a banned key `{:deny, ms, ms}`, a limiter of several policies
  `{:deny, ms, ms, :banned}`.

  `backoff: factor` (a number from 1 to 1000, default 1) lengthens repeat offences: the `n`-th
  offence still remembered bans for `for * factor^(n - 1)`, capped at `max:` (default 64 times
  `for`, at most 100 days). With a factor above 1, offences are remembered until `max` has
  passed since the last ban ended; with 1 they are not kept. Without `:after` and `:within`,
  only `ban/3` bans.

  Denials are counted in a window opened by the first denial of a key; denials while banned
  and refusals of a full table do not count. `ban/3`, `unban/2` and `banned?/2` are the
  operator's side; each ban emits `[:hotpath, :rate_limiter, :ban]`.

  Bans live in the limiter's table, in the key's entry (three more slots per key), so they
  are bounded by `:max_keys` (a key banned by `ban/3` on a full table is refused, see
  `ban/3`), swept once the ban is over and its strikes and offences are forgotten, and kept
  across an owner crash like every counter. `reset/2` forgets a key's ban too. In cluster
  mode, denials are counted and bans decided on the key's owner, and `ban/3` and `banned?/2`
  go to the owner (to this node's table when the owner does not answer, with a
  `:cluster_fallback` event of fallback `:local`); `unban/2` lifts the key's ban on every
  connected member, so a ban left on another node's table by such a fallback goes too.

  ## Keys

  Keys are any term, compared with `===`: `"a"`, `:a`, `1` and `1.0` are different keys.
  Binaries, integers and atoms are used directly; other terms (tuples such as
  `{user_id, :upload}`, IP tuples) through their external term format, which costs a little
  more. Keys are limited to 4096 bytes (a binary's size, or the size of the external format);
  a larger term is refused with `ArgumentError` after a bounded look at it, never encoded in
  full. Functions cannot be keys. (`0.0` and `-0.0` are different keys.)

  ## Memory

  A table's native memory is bounded in bytes, not only in keys: each stored key takes a
  32-byte slot (integers, atoms and binaries or encoded terms of up to 14 bytes live in it),
  plus the hash table's overhead (between 1.1 and 2.3 slots per key as the table grows, about
  37 to 76 bytes per key), plus, for a longer key, its bytes. Those bytes are bounded by
  `:max_bytes` (default 256 per key of `:max_keys`: 256 MiB for the default one million
  keys); a new key whose bytes do not fit is answered as by a full table (`:on_full`, counted
  in `:full_events`). So a table holds at most about
  `max_keys * 80 + max_bytes + shards * 128` bytes (`shards` from `info/1`, at most 65,536):
  under the defaults about 340 MiB, whatever the keys. `info/1` reports `:memory_bytes` (the
  estimate) and `:key_bytes` (what `:max_bytes` bounds).

  A limiter of several policies or with bans keeps one entry per key too: with up to two
  policies (and no bans) the policies live in it, 48 bytes; with more policies, or a ban rule,
  the entry is 32 bytes and the slots take 16 bytes per policy plus 48 for the ban state,
  allocated with the key (counted in `:memory_bytes`).

  ## Time

  The limiter reads a monotonic clock in nanoseconds (never the wall clock). Every call
  takes a `now: ms` option instead, measured on the limiter's own clock (milliseconds since
  the table was created, see `now/1`), so tests drive time explicitly and never sleep.

  ## Cluster mode

  A limiter counts on its own node: behind a load balancer, N nodes admit up to N times the
  limit. Start the same limiter (same name and options) on every node of an Erlang cluster
  with `:cluster` to share it over Erlang distribution, `:pg` and `:erpc`, with no extra
  server:

      {Hotpath.RateLimiter,
       name: MyApp.ApiLimiter, limit: 100, period: :timer.minutes(1),
       cluster: :owner, cluster_timeout: 100, cluster_fallback: :local_share}

    * `cluster: :owner` - every key has one owning node, chosen by rendezvous hashing over
      the limiter's members. A hit for a key this node owns is decided here, in this node's
      table (no network); a hit for a key owned elsewhere is decided on its owner with
      `:erpc.call/5` within `:cluster_timeout` milliseconds. While the membership is stable
      the limit is exact cluster-wide. When the owner does not answer in time (or is not
      connected, or does not run the limiter), `:cluster_fallback` answers: `:local_share`
      decides here with this node's share (below), `:allow` answers `{:allow, 0, 0}` and
      `:deny` answers `{:deny, cluster_timeout, 0}`. A call that timed out may still be counted
      by the owner when it gets to it.
    * `cluster: :local_share` - every node decides alone, with no network hop, enforcing its
      share: `limit` and `burst` divided by N, the number of members, rounded down and at
      least 1, N following the membership. The cluster never admits more than the limit in
      total (for a limit of at least N), but a client whose requests all reach one node gets
      1/N of it.

  **Members.** The members of a limiter, as seen from one node, are that node and the
  connected nodes that run the limiter (its `:pg` group; see `info/1`'s `:cluster`). A node
  joins when its limiter starts (it first asks the connected nodes for the group, waiting at
  most `:cluster_timeout`) and leaves when the limiter stops, the node dies or the
  connection drops: a node that is gone stops being asked at once, without waiting for a
  timeout.

  **Over-admission during membership changes.** A key's count lives in its owner's table.
  When its owner changes, the new owner counts from what its own table holds for the key
  (usually nothing). Rendezvous hashing moves only the keys of a node that leaves, or the
  keys a joining node takes over (about 1/N of them); other keys stay exact. The bound: in any
  interval, one key is admitted cluster-wide at most `(1 + m) * capacity`, where `m` is the
  number of times its owner changed in the interval and `capacity` is what one table admits
  in that interval (`burst` plus the refill at `limit` per `period` for `:gcra` and
  `:token_bucket`; `limit` per window for the window algorithms), plus the fallback
  admissions (`:deny` none, `:local_share` at most one share per node, `:allow` no bound).
  So a node that dies or leaves costs at most one extra capacity for each key it owned (its
  counts die with it), and a node that joins at most one extra capacity for each key it takes
  over.

  **Partitions.** `Node.disconnect/1` or a network partition removes the nodes that lost
  their connection from each other's members at once. OTP's `global` (its
  `prevent_overlapping_partitions`, the default since OTP 25) then cuts further connections
  until the partitions are disjoint. Each partition decides alone, with one owner per key, so
  while it lasts a key is admitted up to one capacity per partition (the bound above, one
  owner change per partition). The limiter itself never sets up a connection: it calls only
  connected nodes, so an owner still in this node's view for the instant after its connection
  dropped gets the fallback (reason `:noconnection`) and is not connected again. When the
  connections come back (`Node.connect/1`, or Erlang's automatic reconnection on the next
  message some other code sends), the groups merge and every key returns to its owner, whose
  table kept its count.

  **Per node.** `info/1`, `now/1` and `sweep/2` act on this node's table (`info/1`'s `:keys`
  counts the keys decided here); `now:` is read on the clock of the node that decides;
  `reset/2` and `reset_all/1` act on every member. Start the limiter with the same options
  on every node: an owner decides with its own policy (per-call `limit:`, `period:` and
  `burst:` travel with the call). A limiter of several policies routes the whole decision
  (every policy) to the key's owner; its `:local_share` is each policy's share. Keys must
  hash alike on every node: plain data such as
  binaries, numbers, atoms and tuples of them (not pids, references or funs). Cluster mode
  needs OTP 25.1 or newer (`:pg.monitor/2`).

  **Cost.** Nothing changes for limiters without `:cluster`: `hit/2,3` is still one NIF call,
  which finds their table by name. A cluster limiter's table runs under an internal name, so
  for its name the NIF answers that nothing is published, and only then does Elixir read the
  cluster view (`:persistent_term`) and hash the key; a key owned here is then one more NIF
  call. A key owned elsewhere costs one `:erpc` round trip (see `benches/cluster.exs`).

  The limiter's processes live under a supervisor in your tree: its `:pg` scope (one per
  limiter), the owner of this node's table, the member process (registered as `name`) that
  follows the group, and the process that joins it.

  ## Telemetry

  When the host application has `:telemetry`, a limiter emits `[:hotpath, :rate_limiter,
  :sweep]` after each sweep pass, `[:hotpath, :rate_limiter, :deny]` for each denied hit
  (with `telemetry_denies: true`), `[:hotpath, :rate_limiter, :ban]` for each ban and, in
  cluster mode, `[:hotpath, :rate_limiter, :cluster_fallback]`; see `Hotpath.Telemetry` for
  their measurements and metadata.
  """

  alias Hotpath.Native
  alias Hotpath.RateLimiter.{Cluster, Key, Options, Owner}

  # The largest `now:` (ms), as in the NIF: about 34 years.
  @max_now_ms Bitwise.bsl(1, 40)
  @now_doc "now must be a non-negative integer of milliseconds up to 2^40"
  @sweep_schema [
    now: [
      type:
        {:custom, __MODULE__, :now_option, "a non-negative integer of milliseconds up to 2^40"},
      default: nil,
      doc: "Sweep as of that time on the limiter's clock (`nil`: now)"
    ]
  ]

  @now_schema [
    now: [
      type:
        {:custom, __MODULE__, :now_option, "a non-negative integer of milliseconds up to 2^40"},
      doc: "The time on the limiter's clock (default: now)"
    ]
  ]
  @ban_call_schema [
                     for: [
                       type: {:integer, 1, 100 * 24 * 3600 * 1000},
                       doc: "The ban's length in milliseconds (default: the limiter's)"
                     ]
                   ] ++ @now_schema
  @reset_schema [policy: [type: :atom, doc: "The policy to reset"]] ++ @now_schema

  @typedoc "A limiter's name, as given in `:name`."
  @type name :: atom()

  @typedoc """
  A limiter decision: 3-tuples for a single policy (with or without bans), 4-tuples for a
  limiter of several policies (see "Several policies").
  """
  @type decision ::
          {:allow, remaining :: non_neg_integer(), reset_after_ms :: non_neg_integer()}
          | {:deny, retry_after_ms :: pos_integer() | :infinity,
             reset_after_ms :: non_neg_integer()}
          | {:allow, remaining :: non_neg_integer(), reset_after_ms :: non_neg_integer(),
             policy :: atom()}
          | {:deny, retry_after_ms :: pos_integer() | :infinity,
             reset_after_ms :: non_neg_integer(), [atom()] | :banned | :full}

  @typedoc """
  Per-call options of `hit/4` and `peek/4`:

    * `:limit`, `:period`, `:burst` - a policy for this call, overriding the limiter's
      (as in redis-cell, the key's stored state is read under the policy of each call, so
      use one policy per key);
    * `:now` - the time in milliseconds on the limiter's clock (see `now/1`).
  """
  @type call_opt ::
          {:limit, pos_integer()}
          | {:period, pos_integer()}
          | {:burst, pos_integer()}
          | {:now, non_neg_integer()}

  @doc """
  A child specification: `{Hotpath.RateLimiter, opts}` in a supervisor.

  The child id is `{Hotpath.RateLimiter, name}`, so several limiters can share a supervisor.
  A cluster limiter is a supervisor child (see "Cluster mode").
  """
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    opts = Options.validate!(opts)
    type = if opts[:cluster], do: :supervisor, else: :worker
    %{id: {__MODULE__, opts[:name]}, start: {__MODULE__, :start_link, [opts]}, type: type}
  end

  @doc """
  Starts a limiter and its owner process, registered as `name`.

  ## Options

  #{Options.docs()}

  With `:cluster` it starts a supervisor of the limiter's processes instead (see "Cluster
  mode"). Invalid options raise `ArgumentError`. If a limiter of that name was stopped abnormally
  (its owner crashed) and is started again with the same table options (`:algorithm`,
  `:limit`, `:period`, `:burst`, `:max_keys`, `:on_full`), it takes over the existing table
  and every counter survives; with different table options it starts with a new table.
  """
  @spec start_link(keyword()) :: GenServer.on_start() | Supervisor.on_start()
  def start_link(opts) do
    opts = Options.validate!(opts)

    case opts[:cluster] do
      nil -> GenServer.start_link(Owner, opts, name: opts[:name])
      _mode -> Cluster.start_link(opts)
    end
  end

  @doc """
  Counts a request of `cost` (default 1) for `key` and answers whether it is admitted.

  See the module docs for the answers and `t:call_opt/0` for `opts`.
  Raises `Hotpath.NotRunningError` when no limiter of that name runs, and `ArgumentError`
  for a cost that is not a positive integer, a key over 4096 bytes or invalid options.
  """
  @spec hit(name(), term(), pos_integer(), [call_opt()]) :: decision()
  def hit(limiter, key, cost \\ 1, opts \\ [])

  def hit(limiter, key, cost, []) do
    # One NIF call: the native side finds the limiter by its name, and marks denials when
    # the limiter reports them. Nothing is published under the name of a cluster limiter (its
    # table runs under an internal name), or of an unknown one: only then does the NIF answer
    # :unpublished.
    case Native.limiter_hit(limiter, key, cost) do
      {:report, decision} -> report(decision, limiter, key, cost)
      :unpublished -> Cluster.hit(limiter, key, cost)
      :measure -> hit_measured(limiter, key, cost)
      {:ban, _, _, _} = answer -> answer(answer, limiter, key, cost)
      decision -> decision
    end
  end

  def hit(limiter, key, cost, opts) do
    case lookup!(limiter) do
      {ref, deny_events, config} ->
        {now, policy, nil} = call_opts!(opts, config, :hit)

        decision =
          key
          |> Key.native(&Native.limiter_call(ref, :hit, &1, cost, now, policy))
          |> answer(limiter, key, cost)

        if deny_events, do: report(decision, limiter, key, cost), else: decision

      {:cluster, cluster} ->
        Cluster.call(cluster, :hit, key, cost, opts)
    end
  end

  # A key the NIF could not measure (see Hotpath.RateLimiter.Key): the same answers.
  defp hit_measured(limiter, key, cost) do
    case Native.limiter_hit(limiter, Key.measured!(key), cost) do
      :unpublished -> Cluster.hit(limiter, key, cost)
      answer -> answer(answer, limiter, key, cost)
    end
  end

  @doc false
  # The answer of a hit, after the telemetry events the NIF asked for: `{:report, decision}`
  # (a denial of a limiter with `telemetry_denies: true`) and `{:ban, answer, ms, offences}`
  # (a denial that started a ban).
  def answer({:report, decision}, limiter, key, cost), do: report(decision, limiter, key, cost)

  def answer({:ban, answer, ms, offences}, limiter, key, cost) do
    Hotpath.Telemetry.emit(Owner.ban_event(limiter, key, ms, offences, :denials))
    answer(answer, limiter, key, cost)
  end

  def answer(decision, _limiter, _key, _cost), do: decision

  @doc """
  The answer `hit/4` would give, without charging anything (and starting no ban).

  For a limiter of several policies, `policy: name` answers for that policy alone, in the
  single-policy shape (`{:allow, remaining, reset_after_ms}` or `{:deny, retry_after_ms,
  reset_after_ms}`; a banned key is refused for the ban's time).

      iex> {:ok, _} = Hotpath.RateLimiter.start_link(name: :doc_peek, limit: 1, period: 1_000)
      iex> Hotpath.RateLimiter.peek(:doc_peek, "k", 1, now: 0)
      {:allow, 0, 1000}
      iex> Hotpath.RateLimiter.peek(:doc_peek, "k", 1, now: 0)
      {:allow, 0, 1000}
  """
  @spec peek(name(), term(), pos_integer(), [call_opt() | {:policy, atom()}]) :: decision()
  def peek(limiter, key, cost \\ 1, opts \\ []) do
    case lookup!(limiter) do
      {ref, _deny_events, config} ->
        local_op(ref, :peek, key, cost, opts, config, limiter)

      {:cluster, cluster} ->
        Cluster.call(cluster, :peek, key, cost, opts)
    end
  end

  @doc """
  Forgets `key`: its next hit is treated as the first (every policy, and its ban, strikes
  and offences). Returns `:ok`.

  `policy: name` forgets the state of that one policy of a limiter of several policies (the
  key's other policies and its ban stay); `now:` is the time of that reset on the limiter's
  clock.

  For a cluster limiter, the key is forgotten on every member (this node first, then the
  others, waiting for them at most `:cluster_timeout`; members that do not answer in time,
  or are no longer connected, keep the key).
  """
  @spec reset(name(), term(), policy: atom(), now: non_neg_integer()) :: :ok
  def reset(limiter, key, opts \\ [])

  def reset(limiter, key, []) do
    case lookup!(limiter) do
      {ref, _, _} ->
        Key.native(key, &Native.limiter_reset(ref, &1))
        :ok

      {:cluster, cluster} ->
        Cluster.reset(cluster, [key])
    end
  end

  def reset(limiter, key, opts) do
    case lookup!(limiter) do
      {ref, _, config} ->
        opts = Hotpath.Options.validate!(opts, @reset_schema, "Hotpath.RateLimiter.reset/3")
        index = policy_index!(config, opts[:policy] || policy_required!())
        Key.native(key, &Native.limiter_ban(ref, {:reset, index}, &1, opts[:now]))
        :ok

      {:cluster, cluster} ->
        Hotpath.Options.validate!(opts, @reset_schema, "Hotpath.RateLimiter.reset/3")
        Cluster.reset(cluster, [key, opts])
    end
  end

  defp policy_required!,
    do: raise(ArgumentError, "reset/3 needs :policy (Hotpath.RateLimiter.reset/3)")

  @doc """
  Bans `key` for `for:` milliseconds (default: the limiter's `ban: [for: ...]`) from now
  (`now:` on the limiter's clock in tests): every hit and peek is refused until then, whatever
  the key's quota, with the ban's remaining time as retry-after. A ban in force is replaced.
  Emits `[:hotpath, :rate_limiter, :ban]` (reason `:manual`).

  Returns `:ok`, or `{:error, :full}` when the key is not stored and the table is full (see
  `:max_keys`). Needs a limiter started with `:ban` (`ArgumentError` otherwise). A cluster
  limiter bans the key on its owner (on this node when the owner does not answer, see
  "Bans").

      iex> {:ok, _} = Hotpath.RateLimiter.start_link(name: :doc_ban, limit: 5, period: 1_000, ban: [for: 60_000])
      iex> Hotpath.RateLimiter.ban(:doc_ban, "mallory", for: 10_000, now: 0)
      :ok
      iex> Hotpath.RateLimiter.hit(:doc_ban, "mallory", 1, now: 4_000)
      {:deny, 6000, 6000}
      iex> Hotpath.RateLimiter.banned?(:doc_ban, "mallory", now: 10_000)
      false
  """
  @spec ban(name(), term(), for: pos_integer(), now: non_neg_integer()) :: :ok | {:error, :full}
  def ban(limiter, key, opts \\ []) do
    opts = Hotpath.Options.validate!(opts, @ban_call_schema, "Hotpath.RateLimiter.ban/3")
    ban_op(limiter, :ban, key, opts)
  end

  @doc """
  Lifts the ban of `key` and forgets its strikes and offences (its quotas stay). Returns
  `:ok`. Needs a limiter started with `:ban`. A cluster limiter unbans the key on every
  connected member (see "Bans").
  """
  @spec unban(name(), term(), now: non_neg_integer()) :: :ok
  def unban(limiter, key, opts \\ []) do
    opts = Hotpath.Options.validate!(opts, @now_schema, "Hotpath.RateLimiter.unban/2")
    ban_op(limiter, :unban, key, opts)
  end

  @doc """
  True while `key` is banned. Needs a limiter started with `:ban`. A cluster limiter asks the
  key's owner.
  """
  @spec banned?(name(), term(), now: non_neg_integer()) :: boolean()
  def banned?(limiter, key, opts \\ []) do
    opts = Hotpath.Options.validate!(opts, @now_schema, "Hotpath.RateLimiter.banned?/2")
    ban_op(limiter, :banned?, key, opts)
  end

  defp ban_op(limiter, op, key, opts) do
    {ms, opts} = Keyword.pop(opts, :for)

    case lookup!(limiter) do
      {ref, _, config} ->
        ms = ban_length!(config, ms, op)
        local_op(ref, op, key, ms, opts, config, limiter)

      {:cluster, cluster} ->
        ms = ban_length!(cluster.config, ms, op)
        Cluster.call(cluster, op, key, ms, opts)
    end
  end

  defp ban_length!(config, ms, op) do
    case config[:ban] do
      nil ->
        raise ArgumentError,
              "#{inspect(op)} needs a limiter started with the :ban option " <>
                "(#{inspect(config[:report_as] || config[:name])} has none)"

      ban ->
        ms || ban[:for]
    end
  end

  @doc """
  Forgets every key of the limiter. Returns `:ok`.

  For a cluster limiter, on every member, as `reset/2`.
  """
  @spec reset_all(name()) :: :ok
  def reset_all(limiter) do
    case lookup!(limiter) do
      {ref, _, _} -> Native.limiter_clear(ref)
      {:cluster, cluster} -> Cluster.reset(cluster, [])
    end
  end

  @doc """
  Keys stored, estimated native memory in bytes (`:memory_bytes`, see "Memory"), bytes of
  key data stored out of line (`:key_bytes`, bounded by `:max_bytes`), full-table events and
  the configuration. It reads counters: its cost does not grow with the table.

  Raises `Hotpath.NotRunningError` when no limiter of that name runs.

  For a cluster limiter, those of this node's table, plus `:cluster`: the mode, the members
  in this node's view and this node's share of the policy (what `:local_share` enforces).

      iex> {:ok, _} = Hotpath.RateLimiter.start_link(name: :doc_info, limit: 5, period: 1_000)
      iex> Hotpath.RateLimiter.hit(:doc_info, "k")
      iex> %{keys: 1, memory_bytes: bytes, config: config} = Hotpath.RateLimiter.info(:doc_info)
      iex> {bytes > 0, config[:algorithm], config[:limit]}
      {true, :gcra, 5}
  """
  @spec info(name()) :: %{
          required(:keys) => non_neg_integer(),
          required(:memory_bytes) => non_neg_integer(),
          required(:key_bytes) => non_neg_integer(),
          required(:full_events) => non_neg_integer(),
          required(:shards) => pos_integer(),
          required(:config) => keyword(),
          optional(:policies) => keyword(keyword()),
          optional(:cluster) => %{
            mode: :owner | :local_share,
            members: [node()],
            share:
              %{limit: pos_integer(), burst: pos_integer() | nil}
              | keyword(%{limit: pos_integer(), burst: pos_integer() | nil})
          }
        }
  def info(limiter) do
    case lookup!(limiter) do
      {ref, _, config} ->
        stats = ref |> Native.limiter_stats() |> Map.put(:config, config)

        case config[:policies] do
          nil -> stats
          policies -> Map.put(stats, :policies, policies)
        end

      {:cluster, cluster} ->
        %{info(cluster.local) | config: cluster.config}
        |> Map.put(:cluster, Cluster.info(cluster))
        |> then(&if(cluster.config[:policies], do: &1, else: Map.delete(&1, :policies)))
    end
  end

  @doc """
  The limiter's clock in milliseconds: the axis `now:` options are measured on.

  Each node of a cluster limiter has its own clock (see "Cluster mode").
  """
  @spec now(name()) :: non_neg_integer()
  def now(limiter) do
    case lookup!(limiter) do
      {ref, _, _} -> Native.limiter_now(ref)
      {:cluster, cluster} -> now(cluster.local)
    end
  end

  @doc """
  The node that decides `key` of a cluster limiter with `cluster: :owner`, in this node's
  current view of the members; this node for any other limiter. See "Cluster mode".
  """
  @spec node_for(name(), term()) :: node()
  def node_for(limiter, key) do
    case lookup!(limiter) do
      {:cluster, cluster} -> Cluster.node_for(cluster, key)
      _local -> node()
    end
  end

  @doc """
  Sweeps the limiter now, in the calling process, and returns what the pass removed.

  The owner also sweeps every `:sweep_every` milliseconds by itself. A sweep removes only
  keys whose state is indistinguishable from a key never seen, in chunks of about 0.3 ms
  each, on a dirty CPU scheduler (giving emptied memory back to the OS after a flood of keys
  expires can take milliseconds inside one chunk; hits meanwhile go on). `now:` sweeps as of that time on the limiter's clock, a
  non-negative integer up to 2^40 (about 34 years). The call never involves the owner
  process: it works while the owner restarts, and bad options cannot reach it.

  Raises `Hotpath.NotRunningError` when no limiter of that name runs, and `ArgumentError` for
  options that are not a keyword list, an unknown option or a bad `:now`.
  """
  @spec sweep(name(), now: non_neg_integer()) :: %{
          removed: non_neg_integer(),
          keys: non_neg_integer(),
          duration: integer()
        }
  def sweep(limiter, opts \\ []) do
    now = Hotpath.Options.validate!(opts, @sweep_schema, "Hotpath.RateLimiter.sweep/2")[:now]

    {ref, config} =
      case lookup!(limiter) do
        {:cluster, cluster} -> table!(cluster.local, limiter)
        {ref, _, config} -> {ref, config}
      end

    started = System.monotonic_time()
    {removed, keys} = Owner.sweep_all(ref, now)
    duration = System.monotonic_time() - started
    name = Keyword.get(config, :report_as, limiter)
    Owner.emit_sweep(ref, name, removed, keys, duration)
    %{removed: removed, keys: keys, duration: duration}
  end

  defp table!(table, limiter) do
    case :persistent_term.get({__MODULE__, table}, nil) do
      {ref, _, config} -> {ref, config}
      _ -> not_running!(limiter)
    end
  end

  # -- internals ---------------------------------------------------------------------

  @doc false
  # A `now:` option (a type of the options schemas).
  def now_option(nil), do: {:ok, nil}
  def now_option(ms) when is_integer(ms) and ms >= 0 and ms <= @max_now_ms, do: {:ok, ms}
  def now_option(_other), do: :error

  @doc false
  # What the owner published under a limiter's name: `{table, deny_events?, config}`,
  # `{:cluster, cluster}` for a cluster limiter, or `nil` when none runs under it.
  def published_entry(limiter), do: :persistent_term.get({__MODULE__, limiter}, nil)

  defp lookup!(limiter) do
    case :persistent_term.get({__MODULE__, limiter}, nil) do
      nil -> not_running!(limiter)
      entry -> entry
    end
  end

  @doc false
  # A decision (or a ban operation) of a table published on this node, or :unpublished (for
  # cluster mode). Events are named after the cluster limiter (`:report_as`).
  def call_local(table, :hit, key, cost, []) do
    case Key.native(key, &Native.limiter_hit(table, &1, cost)) do
      {:ban, _, _, _} = answer -> answer(answer, report_name(table), key, cost)
      decision -> decision
    end
  end

  def call_local(table, op, key, cost, opts) do
    case :persistent_term.get({__MODULE__, table}, nil) do
      {ref, _deny_events, config} ->
        local_op(ref, op, key, cost, opts, config, config[:report_as] || table)

      _ ->
        :unpublished
    end
  end

  defp report_name(table) do
    case :persistent_term.get({__MODULE__, table}, nil) do
      {_ref, _deny_events, config} -> config[:report_as] || table
      _ -> table
    end
  end

  # One operation on this node's table `ref` (whose config is published under `name`).
  defp local_op(ref, op, key, cost, opts, config, name) when op in [:hit, :peek] do
    {now, policy, index} = call_opts!(opts, config, op)
    op = if index, do: {:peek, index}, else: op

    key
    |> Key.native(&Native.limiter_call(ref, op, &1, cost, now, policy))
    |> answer(name, key, cost)
  end

  defp local_op(ref, :ban, key, ms, opts, _config, name) do
    case Key.native(key, &Native.limiter_ban(ref, {:ban, ms}, &1, opts[:now])) do
      true ->
        Hotpath.Telemetry.emit(Owner.ban_event(name, key, ms, 0, :manual))
        :ok

      false ->
        {:error, :full}
    end
  end

  defp local_op(ref, :unban, key, _arg, opts, _config, _name) do
    _ = Key.native(key, &Native.limiter_ban(ref, :unban, &1, opts[:now]))
    :ok
  end

  defp local_op(ref, :banned?, key, _arg, opts, _config, _name),
    do: is_integer(Key.native(key, &Native.limiter_ban(ref, :banned, &1, opts[:now])))

  @doc false
  # What a name that finds no limiter raises: `Hotpath.NotRunningError`, or `ArgumentError`
  # for what cannot name a limiter.
  def not_running!(limiter) when is_atom(limiter),
    do: raise(Hotpath.NotRunningError, module: __MODULE__, name: limiter)

  def not_running!(other) do
    raise ArgumentError,
          "a rate limiter is named by an atom, got: #{inspect(other, limit: 10)}"
  end

  @doc false
  # Checks per-call options in the caller: a keyword list of :now (0..2^40) and :limit,
  # :period, :burst (positive integers; their ranges are checked by the NIF, in the caller
  # too, or by `validate_policy!/2` before a remote call); for `peek/4` of a limiter of
  # several policies, :policy (one of its names). Returns `{now, policy, policy_index}`.
  def call_opts!(opts, config, op \\ :hit) do
    if not (is_list(opts) and Keyword.keyword?(opts)) do
      raise ArgumentError, "call options must be a keyword list, got: #{inspect(opts)}"
    end

    {now, policy, index} =
      Enum.reduce(opts, {nil, nil, nil}, fn
        {:now, ms}, {_, policy, index}
        when is_integer(ms) and ms >= 0 and ms <= @max_now_ms ->
          {ms, policy, index}

        {:now, ms}, _ ->
          raise ArgumentError, "#{@now_doc}, got: #{Hotpath.Options.describe(ms)}"

        {key, value}, {now, policy, index}
        when key in [:limit, :period, :burst] and is_integer(value) and value > 0 ->
          if config[:policies] do
            raise ArgumentError,
                  "per-call #{inspect(key)} applies to a single-policy limiter; " <>
                    "#{inspect(config[:report_as] || config[:name])} has :policies"
          end

          {now, Map.put(policy || %{}, key, value), index}

        {:policy, name}, {now, policy, _} when op == :peek ->
          {now, policy, policy_index!(config, name)}

        other, _ ->
          raise ArgumentError,
                "invalid call option #{inspect(other)}: expected :limit, :period, :burst " <>
                  "(positive integers), :now (a non-negative integer up to 2^40)" <>
                  if(op == :peek, do: " or :policy (a policy name, with peek/4)", else: "")
      end)

    {now, policy && policy_tuple(policy, config), index}
  end

  @doc false
  # The index of a policy of a limiter of several policies, or ArgumentError.
  def policy_index!(config, name) do
    names = Options.policy_names(config)

    case Enum.find_index(names, &(&1 == name)) do
      nil when names == [] ->
        raise ArgumentError,
              ":policy applies to a limiter with :policies; " <>
                "#{inspect(config[:report_as] || config[:name])} has a single policy"

      nil ->
        raise ArgumentError,
              ":policy must be one of #{Enum.map_join(names, ", ", &inspect/1)}, got: " <>
                Hotpath.Options.describe(name)

      index ->
        index
    end
  end

  @doc false
  # Raises ArgumentError unless the call's policy is valid for the limiter's algorithm
  # (checked by the native core, as the owner would).
  def validate_policy!(nil, _config), do: :ok

  def validate_policy!({limit, period, burst}, config) do
    :ok = Native.limiter_validate(config[:algorithm], limit, period, burst)
  end

  # Fields the call does not set come from the limiter; a burst left unset on both sides
  # defaults (in the NIF) to the call's limit.
  defp policy_tuple(policy, config) do
    {Map.get(policy, :limit, config[:limit]), Map.get(policy, :period, config[:period]),
     Map.get(policy, :burst, config[:burst])}
  end

  defp report({:deny, retry_after, reset_after} = decision, limiter, key, cost) do
    Hotpath.Telemetry.emit(Owner.deny_event(limiter, key, cost, retry_after, reset_after))
    decision
  end

  defp report({:deny, retry_after, reset_after, violated} = decision, limiter, key, cost) do
    Hotpath.Telemetry.emit(
      Owner.deny_event(limiter, key, cost, retry_after, reset_after, violated)
    )

    decision
  end

  defp report(decision, _limiter, _key, _cost), do: decision
end
