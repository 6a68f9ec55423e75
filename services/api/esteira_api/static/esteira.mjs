// The ES module face of esteira.js: the same code, loaded once, exported by name.
import "./esteira.js";

// A module has no document.currentScript: the base URL defaults to where this file was loaded
// from (window.ESTEIRA_BASE_URL and Esteira.setBaseUrl still take precedence).
window.Esteira.setBaseUrl(new URL(".", import.meta.url).href.replace(/\/static\/$/, ""));

export const {
  RupturaClient, RupturaWorkerAddon, OsLookup, showOsModal, setApiKey, setBaseUrl, request,
  EsteiraError, describeQueue,
} = window.Esteira;
export default window.Esteira;
