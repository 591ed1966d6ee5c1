defmodule Hotpath.RateLimiter.LiveView do
  @moduledoc """
  Rate-limits a LiveView's `handle_event` calls per user, and optionally its connected
  mounts, with a `Hotpath.RateLimiter` (Phoenix LiveView 0.20 or later):

      # lib/my_app/application.ex
      children = [
        {Hotpath.RateLimiter, name: MyApp.EventLimiter, limit: 20, period: 10_000, burst: 40},
        {Hotpath.RateLimiter, name: MyApp.MountLimiter, limit: 30, period: 60_000},
        ...
      ]

      # lib/my_app_web/router.ex: after the hook that assigns the user
      live_session :authenticated,
        on_mount: [
          {MyAppWeb.UserAuth, :require_authenticated},
          {Hotpath.RateLimiter.LiveView,
           limiter: MyApp.EventLimiter, key: {:assign, [:current_scope, :user, :id]},
           mount_limiter: MyApp.MountLimiter}
        ] do
        live "/rooms/:id", RoomLive
      end

  `on_mount/4` attaches a `:handle_event` hook (`Phoenix.LiveView.attach_hook/4`) that
  counts every event (or those of `:events`) against the key; an event over the limit is
  halted before the LiveView sees it, and by default the socket gets an `:error` flash and
  no other change (`on_deny:` for your own function). With `:mount_limiter`, a connected
  mount over its limit is halted with a redirect (static renders are not counted). Two
  hooks with different `:id`s can limit one view twice:

      on_mount {Hotpath.RateLimiter.LiveView, limiter: MyApp.EventLimiter, key: {:assign, :user_id}}
      on_mount {Hotpath.RateLimiter.LiveView,
                id: :send_limit, limiter: MyApp.SendLimiter, key: {:assign, :user_id},
                events: ["send"]}

  `:key` has no default: which value names a user is the app's. `phx.gen.auth` keeps a
  session token under `"user_token"` and assigns the user (`:current_scope` since Phoenix
  1.8, `:current_user` before): key by the user's id, as above, rather than by the token, a
  secret that would then reach `[:hotpath, :rate_limiter, ...]` telemetry metadata.

  ## Options

  #{Hotpath.RateLimiter.LiveView.Hook.docs()}

  This module is always compiled, whether or not LiveView was visible when Hotpath was
  built: it calls `Phoenix.LiveView` only at run time (`@compile {:no_warn_undefined, ...}`),
  and all of its logic is in `Hotpath.RateLimiter.LiveView.Hook`, which CI tests.
  """

  @compile {:no_warn_undefined, Phoenix.LiveView}

  alias Hotpath.RateLimiter.LiveView.Hook

  @doc """
  The `on_mount` callback: validates `opts` (an `ArgumentError` names a bad one), limits a
  connected mount and attaches the event hook. Returns `{:cont, socket}` or
  `{:halt, socket}` (redirected).
  """
  @spec on_mount(keyword() | Hook.t(), map() | :not_mounted_at_router, map(), socket) ::
          {:cont, socket} | {:halt, socket}
        when socket: map()
  def on_mount(opts, _params, session, socket) do
    config = config!(opts)
    key = Hook.mount_key(config, session, socket)

    case Hook.mount(config, Phoenix.LiveView.connected?(socket), key) do
      {:halt, {:redirect, to}} ->
        {:halt, Phoenix.LiveView.redirect(socket, to: to)}

      :cont ->
        hook = fn event, params, socket -> handle_event(config, key, event, params, socket) end
        {:cont, Phoenix.LiveView.attach_hook(socket, config.id, :handle_event, hook)}
    end
  end

  @doc false
  def handle_event(config, mount_key, event, params, socket) do
    case Hook.event(config, event, params, Hook.event_key(config, socket, mount_key)) do
      :cont ->
        {:cont, socket}

      {:halt, {:flash, kind, message}} ->
        {:halt, Phoenix.LiveView.put_flash(socket, kind, message)}

      {:halt, {:apply, fun}} ->
        {:halt, fun.(socket)}
    end
  end

  defp config!(%Hook{} = config), do: config
  defp config!(opts), do: Hook.new!(opts)
end
