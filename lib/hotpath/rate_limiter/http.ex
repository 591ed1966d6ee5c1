defmodule Hotpath.RateLimiter.HTTP do
  @moduledoc """
  HTTP semantics for `Hotpath.RateLimiter`: which key a request counts against, and the
  status, headers and body that a decision becomes. Pure functions over a plain request map,
  so any server can use it: `Hotpath.RateLimiter.Plug` is a few lines over `check/2`, and so
  is the `:inets` demo (`mix hotpath.demo`).

  A request is a map with `:remote_ip` (an address tuple) and `:req_headers` (a list of
  `{lowercase_name, value}`); a `Plug.Conn` is such a map.

      config = Hotpath.RateLimiter.HTTP.init(limiter: MyApp.ApiLimiter, trusted_proxies: ["10.0.0.0/8"])

      case Hotpath.RateLimiter.HTTP.check(config, request) do
        %{action: :allow, headers: headers} -> # add headers to the response and go on
        %{action: :deny, status: status, headers: headers, body: body} -> # send it, stop
      end

  ## Headers

  With `headers: :draft` (the default), the fields of the IETF draft
  *RateLimit header fields for HTTP* (draft-ietf-httpapi-ratelimit-headers): the policy and
  what is left of it.

      ratelimit-policy: "api";q=100;w=60
      ratelimit: "api";r=42;t=18

  `q` is the limiter's `limit` and `w` its `period` in seconds (a period that is not a whole
  number of seconds is rounded up and `q` scaled down to match); `r` is the remaining quota and
  `t` the seconds until it is fully back. With `headers: :legacy`, the pre-standard fields
  most clients know (`x-ratelimit-reset` in seconds from now, as redis-cell does, not a Unix
  time):

      x-ratelimit-limit: 100
      x-ratelimit-remaining: 42
      x-ratelimit-reset: 18

  `headers: :both` sends both sets and `headers: :none` neither. A denied request also gets
  `retry-after` in whole seconds, rounded up, so it is never 0 (a client that retries after
  it is admitted, if nothing else used the quota meanwhile); on a deny, `t` and
  `x-ratelimit-reset` carry that same wait, as the draft asks (`retry-after` must not be
  earlier than `t`).

  A request whose cost is larger than the policy can ever admit (`{:deny, :infinity, _}`) is
  denied without `retry-after`, since no wait helps.

  ## Several policies

  For a limiter started with `:policies`, `ratelimit-policy` lists every policy, in the
  limiter's order, and `ratelimit` reports the one closest to exhaustion: on an admitted
  request the policy with the fewest requests left (the answer's policy), on a denied one the
  first policy that refused it, with `t` the wait until the request would pass (the largest
  among the refusing policies):

      ratelimit-policy: "burst";q=10;w=1, "daily";q=10000;w=86400
      ratelimit: "daily";r=3;t=41000

  The legacy fields report that same policy, the most restrictive one at that moment. `q` and
  `w` come from each policy's `limit` and `period`: `w` is whole seconds, so a period that is
  not a multiple of 1000 ms is rounded up to the next second and `q` scaled down to that
  window, rounded down and at least 1 (`limit: 10, period: 500` is announced as `q=20;w=1`,
  `limit: 5, period: 1_500` as `q=6;w=2`): the announced rate is never above the real one.
  The `:policy_name`, `:quota` and `:window` options apply to single-policy limiters only. A
  banned key (see `Hotpath.RateLimiter`'s "Bans") is denied with `retry-after` the ban's
  remaining time.

  ## Bodies

  A denied request gets `text/plain` body `Too Many Requests`, or with
  `problem_details: true` an RFC 9457 `application/problem+json` body of the draft's
  `quota-exceeded` problem type:

      {"type":"https://iana.org/assignments/http-problem-types#quota-exceeded",
       "title":"Request cannot be satisfied as assigned quota has been exceeded",
       "status":429,"detail":"...","violated-policies":["api"]}

  For a limiter of several policies, `violated-policies` lists the policies that refused the
  request (none for a banned key, whose `detail` says it is banned).

  ## Options

  #{Hotpath.RateLimiter.HTTP.Config.docs()}
  """

  alias Hotpath.RateLimiter.HTTP.{ClientIP, Config}

  @problem_type "https://iana.org/assignments/http-problem-types#quota-exceeded"
  @problem_title "Request cannot be satisfied as assigned quota has been exceeded"
  @max_key_bytes 4096

  defmodule Result do
    @moduledoc """
    What `Hotpath.RateLimiter.HTTP.check/2` decided for a request.

      * `:action` - `:allow` (add `:headers` to the response and go on) or `:deny` (answer
        with `:status`, `:headers` and `:body` and stop)
      * `:status` - the status of a denial (`429`, or `503` when the limiter is unavailable
        and `on_unavailable: :deny`), `nil` when allowed
      * `:headers` - `[{lowercase_name, value}]`
      * `:body` - the body of a denial (a binary), `nil` when allowed
      * `:key` - the key the request counted against (`nil` if it had none)
      * `:decision` - the limiter's answer (`t:Hotpath.RateLimiter.decision/0`),
        `:no_key` (the key was `nil`) or `:unavailable` (the limiter is not running)
    """
    @enforce_keys [:action, :headers, :decision]
    defstruct [:action, :status, :body, :key, :decision, headers: []]

    @type t :: %__MODULE__{
            action: :allow | :deny,
            status: nil | 429 | 503 | pos_integer(),
            headers: [{String.t(), String.t()}],
            body: nil | binary(),
            key: term(),
            decision: Hotpath.RateLimiter.decision() | :no_key | :unavailable
          }
  end

  @typedoc "A request: a map with `:remote_ip` and `:req_headers` (a `Plug.Conn` is one)."
  @type request :: %{
          optional(:remote_ip) => :inet.ip_address() | nil,
          optional(:req_headers) => [{String.t(), String.t()}],
          optional(atom()) => term()
        }

  @typedoc """
  A policy as the headers describe it: quota `q` per window `w` seconds (for a policy of a
  limiter of several, also `:id`, its name in the limiter's answers).
  """
  @type policy :: %{
          required(:name) => String.t(),
          required(:quota) => pos_integer(),
          required(:window) => pos_integer(),
          optional(:id) => atom()
        }

  @doc """
  Validates options (see the module docs) and returns the config `check/2` takes. Raises
  `ArgumentError` on an invalid option. It does not look the limiter up, so it can run at
  compile time (a Plug's `init/1`) before the limiter is started.
  """
  @spec init(keyword()) :: Config.t()
  def init(opts), do: Config.new!(opts)

  @doc """
  Decides `request`: finds its key, hits the limiter with its cost and builds the response
  parts. See `Hotpath.RateLimiter.HTTP.Result`.

  Raises `ArgumentError` when the key or cost function returns something the limiter cannot
  take (it never raises because of what a client sent: forwarded headers are parsed
  defensively and binary keys longer than 4096 bytes are replaced by their SHA-256).
  """
  @spec check(Config.t(), request()) :: Result.t()
  def check(%Config{} = config, request) do
    case key(config, request) do
      nil -> no_key(config, request)
      key -> hit(config, key, cost(config, request))
    end
  end

  defp no_key(%Config{on_nil_key: :allow}, _request),
    do: %Result{action: :allow, headers: [], decision: :no_key}

  defp no_key(%Config{on_nil_key: :deny} = config, _request) do
    %Result{
      action: :deny,
      status: config.deny_status,
      headers: [{"content-type", "text/plain; charset=utf-8"}],
      body: "Too Many Requests\n",
      decision: :no_key
    }
  end

  defp no_key(%Config{on_nil_key: {:key, key}} = config, request),
    do: hit(config, key, cost(config, request))

  defp hit(config, key, cost) do
    key = bounded_key(key)

    case policy(config) do
      nil -> unavailable(config, key)
      policy -> decide(config, key, cost, policy)
    end
  end

  defp decide(config, key, cost, policy) do
    case limiter_hit(config.limiter, key, cost) do
      :unavailable -> unavailable(config, key)
      decision -> respond(config, key, decision, policy)
    end
  end

  # A limiter that is not running (not started yet, or stopped) is `on_unavailable`'s case.
  defp limiter_hit(limiter, key, cost) do
    Hotpath.RateLimiter.hit(limiter, key, cost)
  rescue
    Hotpath.NotRunningError -> :unavailable
  end

  defp unavailable(%Config{on_unavailable: :allow} = _config, key),
    do: %Result{action: :allow, headers: [], key: key, decision: :unavailable}

  defp unavailable(%Config{on_unavailable: :deny}, key) do
    %Result{
      action: :deny,
      status: 503,
      headers: [{"retry-after", "1"}, {"content-type", "text/plain; charset=utf-8"}],
      body: "Service Unavailable\n",
      key: key,
      decision: :unavailable
    }
  end

  defp respond(config, key, decision, policy) when elem(decision, 0) == :allow do
    %Result{
      action: :allow,
      headers: headers(decision, policy, config.headers),
      key: key,
      decision: decision
    }
  end

  defp respond(config, key, decision, policy) do
    retry = elem(decision, 1)
    {content_type, body} = body(config, decision, policy)

    retry_after =
      case retry do
        :infinity -> []
        ms -> [{"retry-after", Integer.to_string(seconds(ms))}]
      end

    %Result{
      action: :deny,
      status: config.deny_status,
      headers:
        retry_after ++
          headers(decision, policy, config.headers) ++ [{"content-type", content_type}],
      body: body,
      key: key,
      decision: decision
    }
  end

  defp body(%Config{problem_details: false}, _decision, _policy),
    do: {"text/plain; charset=utf-8", "Too Many Requests\n"}

  defp body(%Config{problem_details: true} = config, decision, policy),
    do: {"application/problem+json", problem(decision, policy, config.deny_status)}

  @doc """
  The `application/problem+json` body (RFC 9457) of a denial, with the draft's
  `quota-exceeded` problem type.

      iex> policy = %{name: "api", quota: 10, window: 60}
      iex> Hotpath.RateLimiter.HTTP.problem({:deny, 1500, 6000}, policy, 429)
      ~S({"detail":"Quota of 10 requests per 60 s exceeded; retry in 2 s.","status":429,"title":"Request cannot be satisfied as assigned quota has been exceeded","type":"https://iana.org/assignments/http-problem-types#quota-exceeded","violated-policies":["api"]})
  """
  @spec problem(Hotpath.RateLimiter.decision(), policy() | [policy()], pos_integer()) ::
          String.t()
  def problem({:deny, retry, _reset, violated}, policies, status) when is_list(policies) do
    refused = Enum.filter(policies, &(&1[:id] in List.wrap(violated)))

    detail =
      case {violated, retry} do
        {:banned, ms} ->
          "This client is banned for #{seconds(ms)} s after repeated denials."

        {:full, ms} ->
          "The limiter is full; retry in #{seconds(ms)} s."

        {_, :infinity} ->
          "The cost of this request exceeds the quota of " <>
            Enum.map_join(refused, ", ", &quota_text/1) <> "; it can never be admitted."

        {_, ms} ->
          "Quota of " <>
            Enum.map_join(refused, ", ", &quota_text/1) <> " exceeded; retry in #{seconds(ms)} s."
      end

    problem_body(detail, status, Enum.map(refused, & &1.name))
  end

  def problem({:deny, retry, _reset}, policy, status) do
    detail =
      case retry do
        :infinity ->
          "The cost of this request exceeds the quota of #{policy.quota} requests per " <>
            "#{policy.window} s; it can never be admitted."

        ms ->
          "Quota of #{policy.quota} requests per #{policy.window} s exceeded; " <>
            "retry in #{seconds(ms)} s."
      end

    problem_body(detail, status, [policy.name])
  end

  defp quota_text(policy), do: "#{policy.name} (#{policy.quota} requests per #{policy.window} s)"

  defp problem_body(detail, status, violated) do
    # Keys in a fixed order, so the body is stable.
    [
      {"detail", detail},
      {"status", status},
      {"title", @problem_title},
      {"type", @problem_type},
      {"violated-policies", violated}
    ]
    |> Enum.map(fn {k, v} -> [Hotpath.JSON.encode(k), ?:, Hotpath.JSON.encode(v)] end)
    |> Enum.intersperse(?,)
    |> then(&IO.iodata_to_binary([?{, &1, ?}]))
  end

  @doc """
  The rate-limit header fields of a decision in one of the styles (`:draft`, `:legacy`,
  `:both`, `:none`); `retry-after` is not among them (see `check/2`).

      iex> policy = %{name: "api", quota: 100, window: 60}
      iex> Hotpath.RateLimiter.HTTP.headers({:allow, 42, 17_200}, policy, :draft)
      [{"ratelimit-policy", ~S("api";q=100;w=60)}, {"ratelimit", ~S("api";r=42;t=18)}]
      iex> Hotpath.RateLimiter.HTTP.headers({:deny, 400, 60_000}, policy, :legacy)
      [{"x-ratelimit-limit", "100"}, {"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", "1"}]
  """
  @spec headers(
          Hotpath.RateLimiter.decision(),
          policy() | [policy()],
          :draft | :legacy | :both | :none
        ) ::
          [{String.t(), String.t()}]
  def headers(decision, policies, style) when is_list(policies) do
    {policy, remaining, reset} = reported(decision, policies)
    listed = Enum.map_join(policies, ", ", &policy_item/1)

    draft = fn ->
      [
        {"ratelimit-policy", listed},
        {"ratelimit", "#{sf_string(policy.name)};r=#{remaining};t=#{reset}"}
      ]
    end

    case style do
      :draft -> draft.()
      :legacy -> legacy(policy, remaining, reset)
      :both -> draft.() ++ legacy(policy, remaining, reset)
      :none -> []
    end
  end

  def headers(decision, policy, style) do
    {remaining, reset} = remaining_and_reset(decision)

    case style do
      :draft -> draft(policy, remaining, reset)
      :legacy -> legacy(policy, remaining, reset)
      :both -> draft(policy, remaining, reset) ++ legacy(policy, remaining, reset)
      :none -> []
    end
  end

  defp remaining_and_reset({:allow, remaining, reset_ms}), do: {remaining, seconds(reset_ms, 0)}
  defp remaining_and_reset({:deny, :infinity, reset_ms}), do: {0, seconds(reset_ms, 0)}
  defp remaining_and_reset({:deny, retry_ms, _reset_ms}), do: {0, seconds(retry_ms)}

  defp draft(policy, remaining, reset) do
    [
      {"ratelimit-policy", policy_item(policy)},
      {"ratelimit", "#{sf_string(policy.name)};r=#{remaining};t=#{reset}"}
    ]
  end

  defp policy_item(policy), do: "#{sf_string(policy.name)};q=#{policy.quota};w=#{policy.window}"

  # The policy a multi-policy answer reports, with what is left of it: the admitted answer's
  # policy (the fewest left), or the first that refused the request.
  defp reported({:allow, remaining, reset_ms, id}, policies),
    do: {find_policy(policies, id), remaining, seconds(reset_ms, 0)}

  defp reported({:deny, :infinity, reset_ms, violated}, policies),
    do: {find_policy(policies, List.first(List.wrap(violated))), 0, seconds(reset_ms, 0)}

  defp reported({:deny, retry_ms, _reset_ms, violated}, policies),
    do: {find_policy(policies, List.first(List.wrap(violated))), 0, seconds(retry_ms)}

  defp reported(plain, [policy | _]) do
    {remaining, reset} = remaining_and_reset(plain)
    {policy, remaining, reset}
  end

  defp find_policy([first | _] = policies, id),
    do: Enum.find(policies, first, &(&1[:id] == id))

  defp legacy(policy, remaining, reset) do
    [
      {"x-ratelimit-limit", Integer.to_string(policy.quota)},
      {"x-ratelimit-remaining", Integer.to_string(remaining)},
      {"x-ratelimit-reset", Integer.to_string(reset)}
    ]
  end

  # RFC 9651 sf-string: printable ASCII, `"` and `\` escaped (checked by Config).
  defp sf_string(name), do: [?", String.replace(name, ["\\", "\""], &("\\" <> &1)), ?"]

  @doc """
  Milliseconds as whole seconds for `retry-after`, rounded up and at least 1.

      iex> Enum.map([1, 999, 1000, 1001, 0], &Hotpath.RateLimiter.HTTP.retry_after/1)
      [1, 1, 1, 2, 1]
  """
  @spec retry_after(non_neg_integer()) :: pos_integer()
  def retry_after(ms) when is_integer(ms) and ms >= 0, do: seconds(ms)

  defp seconds(ms, min \\ 1), do: max(min, div(ms + 999, 1000))

  @doc """
  The policy the headers describe: from the `:quota`/`:window` options, else from the
  running limiter's `limit` and `period`; for a limiter of several policies, the list of its
  policies, each named after its key in `:policies` (see "Several policies"). `nil` when it
  comes from the limiter and the limiter is not running.

      iex> config = Hotpath.RateLimiter.HTTP.init(limiter: :not_started, quota: 5, window: 1)
      iex> Hotpath.RateLimiter.HTTP.policy(config)
      %{name: "not_started", quota: 5, window: 1}
  """
  @spec policy(Config.t()) :: policy() | [policy()] | nil
  def policy(%Config{} = config) do
    case Hotpath.RateLimiter.published_entry(config.limiter) do
      {:cluster, cluster} -> policy_of(config, cluster.config)
      {_ref, _telemetry, limiter_opts} -> policy_of(config, limiter_opts)
      nil -> fixed_policy(config)
    end
  end

  defp policy_of(config, limiter_opts) do
    case limiter_opts[:policies] do
      nil ->
        fixed_policy(config) ||
          (
            {quota, window} = quota_window(limiter_opts[:limit], limiter_opts[:period])

            %{
              name: config.policy_name,
              quota: config.quota || quota,
              window: config.window || window
            }
          )

      policies ->
        for {id, p} <- policies do
          {quota, window} = quota_window(p[:limit], p[:period])
          %{name: printable(id), quota: quota, window: window, id: id}
        end
    end
  end

  defp fixed_policy(%Config{quota: quota, window: window} = config)
       when is_integer(quota) and is_integer(window),
       do: %{name: config.policy_name, quota: quota, window: window}

  defp fixed_policy(_config), do: nil

  defp printable(id), do: String.replace(Atom.to_string(id), ~r/[^\x20-\x7E]/u, "_")

  @doc """
  A limiter's `limit` per `period` milliseconds as a quota per whole seconds: the period
  rounded up to seconds and the quota scaled down to it (never above the real rate).

      iex> Hotpath.RateLimiter.HTTP.quota_window(100, 60_000)
      {100, 60}
      iex> Hotpath.RateLimiter.HTTP.quota_window(10, 500)
      {20, 1}
      iex> Hotpath.RateLimiter.HTTP.quota_window(5, 1_500)
      {6, 2}
  """
  @spec quota_window(pos_integer(), pos_integer()) :: {pos_integer(), pos_integer()}
  def quota_window(limit, period_ms) when rem(period_ms, 1000) == 0,
    do: {limit, div(period_ms, 1000)}

  def quota_window(limit, period_ms) do
    window = div(period_ms + 999, 1000)
    {max(1, div(limit * window * 1000, period_ms)), window}
  end

  # -- keys --------------------------------------------------------------------------

  @doc """
  The key `request` counts against under `config` (`nil` if it has none).

      iex> config = Hotpath.RateLimiter.HTTP.init(limiter: :l, trusted_proxies: ["127.0.0.1"])
      iex> request = %{remote_ip: {127, 0, 0, 1}, req_headers: [{"x-forwarded-for", "203.0.113.5"}]}
      iex> Hotpath.RateLimiter.HTTP.key(config, request)
      "203.0.113.5"
  """
  @spec key(Config.t(), request()) :: term()
  def key(%Config{key: :ip} = config, request) do
    case ClientIP.client_ip(request, config.trusted_proxies, config.ip_header) do
      nil -> nil
      ip -> ClientIP.key(ip, config.ipv6_prefix)
    end
  end

  def key(%Config{key: {:fixed, key}}, _request), do: key
  def key(%Config{key: fun}, request) when is_function(fun, 1), do: fun.(request)
  def key(%Config{key: {m, f, a}}, request), do: apply(m, f, [request | a])

  defp bounded_key(key) when is_binary(key) and byte_size(key) > @max_key_bytes,
    do: :crypto.hash(:sha256, key)

  defp bounded_key(key), do: key

  defp cost(%Config{cost: cost}, _request) when is_integer(cost), do: cost

  defp cost(%Config{cost: fun}, request), do: Hotpath.RateLimiter.Options.cost!(fun.(request))
end
