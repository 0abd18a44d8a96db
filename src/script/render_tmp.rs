//! TEMPORARY until the script branch lands: Template rendering.
use super::ast::{Template, TemplatePart};
use super::pattern::Bindings;

#[derive(Debug, thiserror::Error)]
#[error("unknown variable {{{0}}}")]
pub struct RenderError(pub String);

impl Template {
    pub fn render(&self, vars: &Bindings) -> Result<String, RenderError> {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                TemplatePart::Text(t) => out.push_str(t),
                TemplatePart::Var(v) => out.push_str(
                    &vars.0.get(v).ok_or_else(|| RenderError(v.clone()))?.to_template_text(),
                ),
            }
        }
        Ok(out)
    }
}
