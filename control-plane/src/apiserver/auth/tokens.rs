//! kube-apiserver's static token file (`--token-auth-file`): one CSV line per token,
//! `token,user,uid[,"group1,group2"]`; blank lines and `#` comments are skipped.

use std::collections::HashMap;
use std::path::Path;

use super::UserInfo;

/// Tokens and the users they stand for.
#[derive(Debug, Default, Clone)]
pub struct StaticTokens {
    users: HashMap<String, UserInfo>,
}

impl StaticTokens {
    /// Reads a token file; a bad line is an error naming the file and line.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut users = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            let [token, user, uid, rest @ ..] = fields.as_slice() else {
                return Err(format!(
                    "line {}: expected token,user,uid[,\"groups\"]",
                    index + 1
                ));
            };
            if token.is_empty() || user.is_empty() {
                return Err(format!("line {}: empty token or user", index + 1));
            }
            let groups = rest
                .first()
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let info = UserInfo {
                name: user.clone(),
                uid: uid.clone(),
                groups,
            };
            if users.insert(token.clone(), info).is_some() {
                return Err(format!("line {}: the token is listed twice", index + 1));
            }
        }
        Ok(StaticTokens { users })
    }

    /// The user `token` stands for.
    pub fn user(&self, token: &str) -> Option<&UserInfo> {
        self.users.get(token)
    }
}

/// Splits one CSV line; a field in double quotes may hold commas (`""` is a quote).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field).trim().to_string()),
            c => field.push(c),
        }
    }
    fields.push(field.trim().to_string());
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_users_uids_and_quoted_groups() {
        let tokens =
            StaticTokens::parse("# comment\n\nabc123,alice,1001,\"dev,ml-team\"\nxyz,bob,1002\n")
                .unwrap();
        let alice = tokens.user("abc123").unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.uid, "1001");
        assert_eq!(alice.groups, ["dev", "ml-team"]);
        assert!(tokens.user("xyz").unwrap().groups.is_empty());
        assert!(tokens.user("nope").is_none());
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            StaticTokens::parse("ok,u,1\njusttoken\n").unwrap_err(),
            "line 2: expected token,user,uid[,\"groups\"]"
        );
        assert!(
            StaticTokens::parse("t,u,1\nt,v,2\n")
                .unwrap_err()
                .contains("line 2")
        );
    }
}
