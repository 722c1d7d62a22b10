// Where the API is: edit this file after deploying the static files (see web/README.md).
// Empty strings mean "the origin this page came from" (the dev server serves both).
window.CHAT_CONFIG = {
  apiBaseUrl: "",
  // On AWS: the stack's ReplyStreamUrl (replies stream token by token) and WebSocketUrl.
  streamUrl: "",
  socketUrl: "",
  // The dev server's `POST /dev/token`; off for a deployed app (sign-in is Telegram's or yours).
  devSignIn: true,
};
