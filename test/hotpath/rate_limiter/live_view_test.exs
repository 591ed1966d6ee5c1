defmodule Hotpath.RateLimiter.LiveViewTest do
  # The LiveView hook: its logic (Hotpath.RateLimiter.LiveView.Hook) against real limiters,
  # and the adapter's few lines against a stand-in of the four Phoenix.LiveView functions it
  # calls (LiveView cannot be installed here; the stand-in is defined only when the real
  # module is absent).
  use ExUnit.Case, async: true

  alias Hotpath.RateLimiter
  alias Hotpath.RateLimiter.LiveView
  alias Hotpath.RateLimiter.LiveView.Hook

  doctest Hotpath.RateLimiter.LiveView.Hook

  if not Code.ensure_loaded?(Phoenix.LiveView) do
    defmodule Elixir.Phoenix.LiveView do
      @moduledoc false
      def connected?(socket), do: socket.connected?
      def redirect(socket, to: to), do: Map.put(socket, :redirected, to)

      def attach_hook(socket, name, :handle_event, fun),
        do: Map.update!(socket, :hooks, &Map.put(&1, name, fun))

      def put_flash(socket, kind, message),
        do: update_in(socket, [:assigns, :flash], &Map.put(&1 || %{}, to_string(kind), message))
    end
  end

  @user {:session, "user_id"}

  defp limiter!(opts) do
    name = :"lv_#{System.unique_integer([:positive])}"
    start_supervised!({RateLimiter, [name: name, sweep_every: :infinity] ++ opts}, id: name)
    name
  end

  defp socket(assigns \\ %{}, connected? \\ true),
    do: %{assigns: Map.merge(%{flash: %{}}, assigns), connected?: connected?, hooks: %{}}

  describe "Hook" do
    test "counts events per key and halts those over the limit" do
      l = limiter!(limit: 2, period: 600_000)
      config = Hook.new!(limiter: l, key: @user)
      assert Hook.event(config, "save", %{}, 1) == :cont
      assert Hook.event(config, "save", %{}, 1) == :cont
      assert {:halt, {:flash, :error, message}} = Hook.event(config, "save", %{}, 1)
      assert message =~ "too often"
      # Another user has their own budget.
      assert Hook.event(config, "save", %{}, 2) == :cont
    end

    test "only the listed events count; costs; nil keys" do
      l = limiter!(limit: 3, period: 600_000)

      config =
        Hook.new!(
          limiter: l,
          key: @user,
          events: ["upload"],
          cost: fn "upload", %{"files" => n} -> n end,
          on_nil_key: :deny
        )

      for _ <- 1..10, do: assert(Hook.event(config, "validate", %{}, "u") == :cont)
      assert Hook.event(config, "upload", %{"files" => 2}, "u") == :cont
      assert {:halt, _} = Hook.event(config, "upload", %{"files" => 2}, "u")
      assert Hook.event(config, "upload", %{"files" => 1}, "u") == :cont
      assert {:halt, {:flash, :error, _}} = Hook.event(config, "upload", %{"files" => 1}, nil)
      assert Hook.event(%{config | on_nil_key: :allow}, "upload", %{"files" => 1}, nil) == :cont

      assert_raise ArgumentError, ~r/:cost function must return a positive integer/, fn ->
        Hook.event(config, "upload", %{"files" => 0}, "v")
      end
    end

    test "keys from the session, an assign, a function or an MFA" do
      config = Hook.new!(limiter: :l, key: {:session, :user_id})
      assert Hook.mount_key(config, %{"user_id" => "t"}, socket()) == "t"
      assert Hook.mount_key(config, %{}, socket()) == nil
      assert Hook.event_key(config, socket(), "t") == "t"
      config = Hook.new!(limiter: :l, key: {:assign, :current_user_id})
      assert Hook.mount_key(config, %{}, socket(%{current_user_id: 7})) == nil
      assert Hook.event_key(config, socket(%{current_user_id: 7}), nil) == 7
      # A path into an assign: maps and structs alike, nil where it ends early.
      config = Hook.new!(limiter: :l, key: {:assign, [:current_scope, :user, :id]})
      scope = %{user: URI.parse("http://x")}
      assert Hook.event_key(config, socket(%{current_scope: %{user: %{id: 3}}}), nil) == 3
      assert Hook.event_key(config, socket(%{current_scope: nil}), nil) == nil
      assert Hook.event_key(config, socket(%{current_scope: scope}), nil) == nil
      assert Hook.event_key(config, socket(), nil) == nil
      by_hand = %Hook{limiter: :l, key: {:assign, :current_user_id}}
      assert Hook.event_key(by_hand, socket(%{current_user_id: 7}), nil) == 7
      config = Hook.new!(limiter: :l, key: &Map.fetch!(&1.assigns, :room))
      assert Hook.event_key(config, socket(%{room: "r"}), nil) == "r"
      config = Hook.new!(limiter: :l, key: {Map, :get, [:assigns]})
      assert Hook.event_key(config, socket(), nil) == %{flash: %{}}
    end

    test "a custom deny handler gets the socket, the event and the decision" do
      l = limiter!(limit: 1, period: 600_000)
      test = self()

      config =
        Hook.new!(
          limiter: l,
          key: @user,
          on_deny: fn socket, event, decision ->
            send(test, {:denied, event, decision})
            socket
          end
        )

      assert Hook.event(config, "e", %{}, "k") == :cont
      assert {:halt, {:apply, fun}} = Hook.event(config, "e", %{}, "k")
      assert fun.(:socket) == :socket
      assert_received {:denied, "e", {:deny, _, _}}
    end

    test "connected mounts are limited, static renders are not; a stopped limiter admits" do
      events = limiter!(limit: 1, period: 600_000)
      mounts = limiter!(limit: 1, period: 600_000)

      config =
        Hook.new!(limiter: events, key: @user, mount_limiter: mounts, mount_redirect: "/busy")

      assert Hook.mount(config, false, "k") == :cont
      assert Hook.mount(config, true, "k") == :cont
      assert Hook.mount(config, true, "k") == {:halt, {:redirect, "/busy"}}
      assert Hook.mount(config, false, "k") == :cont
      assert Hook.mount(config, true, nil) == :cont
      assert Hook.mount(Hook.new!(limiter: events, key: @user), true, "k") == :cont
      stopped = Hook.new!(limiter: :not_started, key: @user, mount_limiter: :not_started_either)
      assert Hook.event(stopped, "e", %{}, "k") == :cont
      assert Hook.mount(stopped, true, "k") == :cont
    end

    test "a limiter of several policies" do
      l =
        limiter!(
          policies: [
            burst: [limit: 1, period: 600_000],
            day: [algorithm: :fixed_window, limit: 5, period: 86_400_000]
          ]
        )

      config = Hook.new!(limiter: l, key: @user)
      assert Hook.event(config, "e", %{}, "k") == :cont
      assert {:halt, _} = Hook.event(config, "e", %{}, "k")
    end

    test "bad options raise ArgumentError naming the option" do
      for {opts, message} <- [
            {[key: @user], ~r/missing required option :limiter/},
            {[limiter: :l], ~r/missing required option :key/},
            {[limiter: "l", key: @user], ~r/:limiter must be a non-nil, non-boolean atom/},
            {[limiter: :l, key: {:assign, [:scope, "user"]}], ~r/:key must be a function of/},
            {[limiter: :l, key: {:cookie, "x"}], ~r/:key must be a function of arity 1 or/},
            {[limiter: :l, key: @user, events: [:save]], ~r/:events must be :all or a list/},
            {[limiter: :l, key: @user, cost: 0], ~r/:cost must be/},
            {[limiter: :l, key: @user, on_deny: fn -> :x end], ~r/:on_deny must be/},
            {[limiter: :l, key: @user, on_nil_key: :maybe],
             ~r/:on_nil_key must be one of :allow, :deny/},
            {[limiter: :l, key: @user, message: ""], ~r/:message must be a non-empty string/},
            {[limiter: :l, key: @user, mount_limiter: "m"], ~r/:mount_limiter must be/},
            {[limiter: :l, key: @user, mount_redirect: :home], ~r/:mount_redirect must be/},
            {[limiter: :l, key: @user, colour: :red], ~r/unknown options \[:colour\]/},
            {[limiter: :l, key: @user, id: "hook"], ~r/:id must be/},
            {:not_a_list, ~r/options must be a keyword list/}
          ] do
        assert_raise ArgumentError, message, fn -> Hook.new!(opts) end
        assert_raise ArgumentError, message, fn -> LiveView.on_mount(opts, %{}, %{}, socket()) end
      end
    end
  end

  describe "the adapter" do
    test "attaches a hook that halts over-limit events with a flash and no state change" do
      l = limiter!(limit: 2, period: 600_000)
      opts = [limiter: l, key: {:session, "user_id"}]
      assert {:cont, socket} = LiveView.on_mount(opts, %{}, %{"user_id" => 5}, socket(%{n: 0}))
      hook = socket.hooks.hotpath_rate_limit
      assert {:cont, ^socket} = hook.("inc", %{}, socket)
      assert {:cont, ^socket} = hook.("inc", %{}, socket)
      assert {:halt, halted} = hook.("inc", %{}, socket)
      assert halted.assigns.flash["error"] =~ "too often"
      assert halted.assigns.n == 0
    end

    test "two hooks with their own ids limit one view twice" do
      all = limiter!(limit: 3, period: 600_000)
      send = limiter!(limit: 1, period: 600_000)
      session = %{"user_id" => 5}

      assert {:cont, socket} =
               LiveView.on_mount([limiter: all, key: @user], %{}, session, socket(%{n: 0}))

      opts = [limiter: send, key: @user, id: :send_limit, events: ["send"]]
      assert {:cont, socket} = LiveView.on_mount(opts, %{}, session, socket)
      %{hotpath_rate_limit: every, send_limit: sends} = socket.hooks
      # As LiveView runs a chain of hooks: a halt stops it.
      run = fn event ->
        Enum.reduce_while([every, sends], {:cont, socket}, fn hook, {:cont, socket} ->
          case hook.(event, %{}, socket) do
            {:cont, socket} -> {:cont, {:cont, socket}}
            halt -> {:halt, halt}
          end
        end)
      end

      assert {:cont, _} = run.("send")
      assert {:halt, _} = run.("send")
      assert {:cont, _} = run.("other")
      assert {:halt, _} = run.("other")
    end

    test "an assign key limits connected mounts; without a mount limiter it is not read at mount" do
      events = limiter!(limit: 5, period: 600_000)
      mounts = limiter!(limit: 1, period: 600_000)
      key = {:assign, [:current_scope, :user, :id]}
      opts = [limiter: events, key: key, mount_limiter: mounts]
      user = socket(%{current_scope: %{user: %{id: 9}}})
      assert {:cont, _} = LiveView.on_mount(opts, %{}, %{}, user)
      assert {:halt, %{redirected: "/"}} = LiveView.on_mount(opts, %{}, %{}, user)
      # No user assigned at mount (the auth hook ran later, or not at all): not counted.
      assert {:cont, _} = LiveView.on_mount(opts, %{}, %{}, socket())

      # A key function reading an assign the view's mount/3 sets: called at events only.
      opts = [limiter: events, key: &Map.fetch!(&1.assigns, :room)]
      assert {:cont, socket} = LiveView.on_mount(opts, %{}, %{}, socket())
      room = %{socket | assigns: Map.put(socket.assigns, :room, "lobby")}
      assert {:cont, _} = socket.hooks.hotpath_rate_limit.("e", %{}, room)
    end

    test "a connected mount over the limit is halted with a redirect" do
      events = limiter!(limit: 5, period: 600_000)
      mounts = limiter!(limit: 1, period: 600_000)

      opts =
        Hook.new!(limiter: events, key: @user, mount_limiter: mounts, mount_redirect: "/slow")

      session = %{"user_id" => 1}
      assert {:cont, _} = LiveView.on_mount(opts, %{}, session, socket(%{}, false))
      assert {:cont, _} = LiveView.on_mount(opts, %{}, session, socket())
      assert {:halt, %{redirected: "/slow"}} = LiveView.on_mount(opts, %{}, session, socket())
    end
  end
end
