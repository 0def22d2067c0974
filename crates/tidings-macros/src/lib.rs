//! `#[derive(Message)]` for Tidings contracts.
//!
//! ```ignore
//! #[derive(Serialize, Deserialize, Message)]
//! #[message(name = "orderflow.order-placed", version = 2, kind = "event")]
//! struct OrderPlaced { order_id: Uuid }
//! ```

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use proc_macro_crate::{crate_name, FoundCrate};
use quote::quote;
use syn::{parse_macro_input, DeriveInput, LitInt, LitStr};

/// Implements `Message` (and `Event` or `Command`) for a serde type.
///
/// Attributes: `name` (required, the stable contract name), `version` (default 1),
/// `kind` (`"event"` or `"command"`, required).
#[proc_macro_derive(Message, attributes(message))]
pub fn derive_message(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn core_path() -> TokenStream2 {
    // Always an absolute path by crate name: `tidings` and `tidings-core` name themselves
    // (`extern crate self as ..;`), so `::tidings_core` works inside the library too, and in
    // its doc tests (compiled with the library's CARGO_CRATE_NAME, where `crate` would be the
    // doc test itself), examples, tests and benches.
    let resolve = |package: &str, lib: &str| match crate_name(package) {
        Ok(FoundCrate::Itself) => {
            let id = syn::Ident::new(lib, Span::call_site());
            Some(quote!(::#id))
        }
        Ok(FoundCrate::Name(n)) => {
            let id = syn::Ident::new(&n, Span::call_site());
            Some(quote!(::#id))
        }
        Err(_) => None,
    };
    resolve("tidings", "tidings")
        .or_else(|| resolve("tidings-core", "tidings_core"))
        .unwrap_or_else(|| quote!(::tidings_core))
}

fn expand(input: DeriveInput) -> syn::Result<TokenStream2> {
    let mut name: Option<LitStr> = None;
    let mut version: Option<u32> = None;
    let mut kind: Option<(String, Span)> = None;
    let mut seen_attr = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("message")) {
        seen_attr = true;
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let v: LitStr = meta.value()?.parse()?;
                if name.is_some() {
                    return Err(meta.error("duplicate `name`: a contract has exactly one name"));
                }
                if v.value().trim().is_empty() {
                    return Err(syn::Error::new(v.span(), "`name` must not be empty"));
                }
                name = Some(v);
                Ok(())
            } else if meta.path.is_ident("version") {
                let v: LitInt = meta.value()?.parse()?;
                if version.is_some() {
                    return Err(meta.error("duplicate `version`"));
                }
                let n: u32 = v.base10_parse()?;
                if n == 0 {
                    return Err(syn::Error::new(v.span(), "`version` starts at 1"));
                }
                version = Some(n);
                Ok(())
            } else if meta.path.is_ident("kind") {
                let v: LitStr = meta.value()?.parse()?;
                if kind.is_some() {
                    return Err(meta.error("duplicate `kind`"));
                }
                match v.value().as_str() {
                    "event" | "command" => kind = Some((v.value(), v.span())),
                    _ => {
                        return Err(syn::Error::new(
                            v.span(),
                            "`kind` must be \"event\" or \"command\"",
                        ))
                    }
                }
                Ok(())
            } else {
                Err(meta.error("unknown attribute: expected `name`, `version` or `kind`"))
            }
        })?;
    }
    let ident = &input.ident;
    let Some(name) = name else {
        let msg = if seen_attr {
            "missing `name`: add #[message(name = \"...\")]"
        } else {
            "missing #[message(name = \"...\", version = 1, kind = \"event\"|\"command\")]"
        };
        return Err(syn::Error::new_spanned(ident, msg));
    };
    let Some((kind, _)) = kind else {
        return Err(syn::Error::new_spanned(
            ident,
            "missing `kind`: add kind = \"event\" or kind = \"command\" to #[message(..)]",
        ));
    };
    let version = version.unwrap_or(1);
    let krate = core_path();
    let (ig, tg, wc) = input.generics.split_for_impl();
    let (kind_variant, marker) = if kind == "event" {
        (quote!(Event), quote!(Event))
    } else {
        (quote!(Command), quote!(Command))
    };
    Ok(quote! {
        impl #ig #krate::Message for #ident #tg #wc {
            const NAME: &'static str = #name;
            const VERSION: u32 = #version;
            const KIND: #krate::MessageKind = #krate::MessageKind::#kind_variant;
        }
        impl #ig #krate::#marker for #ident #tg #wc {}
    })
}

#[cfg(test)]
mod tests {
    use super::expand;
    use syn::parse_quote;

    fn err(input: syn::DeriveInput) -> String {
        match expand(input) {
            Ok(_) => String::from("<no error>"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_complete_contract_expands() {
        let ts = expand(parse_quote! {
            #[message(name = "orderflow.order-placed", version = 2, kind = "event")]
            struct OrderPlaced { id: u32 }
        })
        .map(|t| t.to_string())
        .unwrap_or_default();
        assert!(ts.contains("\"orderflow.order-placed\""), "{ts}");
        assert!(ts.contains("2u32"), "{ts}");
        assert!(ts.contains("Event for OrderPlaced"), "{ts}");
    }

    #[test]
    fn missing_name_is_a_clear_error() {
        assert!(
            err(parse_quote! { #[message(kind = "event")] struct A; }).contains("missing `name`")
        );
        assert!(err(parse_quote! { struct A; }).contains("missing #[message(name"));
    }

    #[test]
    fn duplicate_and_bad_attributes_are_errors() {
        let dup =
            err(parse_quote! { #[message(name = "a", name = "b", kind = "event")] struct A; });
        assert!(dup.contains("duplicate `name`"), "{dup}");
        let kind = err(parse_quote! { #[message(name = "a", kind = "query")] struct A; });
        assert!(kind.contains("must be \"event\" or \"command\""), "{kind}");
        let v0 =
            err(parse_quote! { #[message(name = "a", version = 0, kind = "event")] struct A; });
        assert!(v0.contains("starts at 1"), "{v0}");
        let no_kind = err(parse_quote! { #[message(name = "a")] struct A; });
        assert!(no_kind.contains("missing `kind`"), "{no_kind}");
        let unknown =
            err(parse_quote! { #[message(name = "a", kind = "event", topic = "x")] struct A; });
        assert!(unknown.contains("unknown attribute"), "{unknown}");
    }
}
